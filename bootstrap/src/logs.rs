//! `mbstack logs`: Metabase's lines from the stack's CloudWatch log group
//! (`/mbstack/<stack>/metabase`, one stream a task), oldest first, each with
//! the task that wrote it; `--follow` keeps reading until Ctrl-C, as
//! `aws logs tail --follow` and `copilot svc logs --follow` do.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, Context};
use serde_json::json;

use crate::run::{config, Output, Target};

/// How far back `--since` reaches when not given (as `aws logs tail`).
pub const DEFAULT_SINCE: &str = "10m";

/// A `--since` duration: a whole number and a unit (s, m, h, d, w).
pub fn parse_since(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().map_err(|_| {
        format!("--since: {text:?} is not a duration; give a number and a unit, e.g. 30m, 2h or 1d")
    })?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "--since: {text:?} has no known unit; use s, m, h, d or w, e.g. 30m, 2h or 1d"
            ))
        }
    };
    n.checked_mul(seconds)
        .filter(|s| *s <= 366 * 86_400)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("--since: {text:?} reaches back more than a year; CloudWatch keeps Metabase's logs 30 days"))
}

/// The task a stream belongs to: the last part of `metabase/metabase/<task id>`.
fn task_of(stream: &str) -> &str {
    stream.rsplit('/').next().unwrap_or(stream)
}

/// One line as printed: UTC time, the task (its ID's first 8 characters), the
/// message.
pub fn line(timestamp_ms: i64, stream: &str, message: &str) -> String {
    let time = jiff::Timestamp::from_millisecond(timestamp_ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|_| timestamp_ms.to_string());
    let task: String = task_of(stream).chars().take(8).collect();
    format!("{time} {task} {}", message.trim_end())
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Prints the stack's log lines since `since` ago, then, with `follow`, every
/// new line until Ctrl-C.
pub async fn logs(
    t: &Target,
    stack: &str,
    since: Duration,
    follow: bool,
    output: Output,
) -> anyhow::Result<()> {
    let cfg = config(t).await?;
    let client = aws_sdk_cloudwatchlogs::Client::new(&cfg);
    let group = mbstack_app::names::log_group(stack);
    let first = now_ms() - i64::try_from(since.as_millis()).unwrap_or(i64::MAX / 2);
    let mut start = first;
    // Events printed, with their timestamps: each read starts a window before
    // the newest event seen (CloudWatch takes an event in late, with its own
    // older timestamp), and an event already printed is not printed again.
    let mut printed: HashMap<String, i64> = HashMap::new();
    let mut newest = start;
    // `--output json`: one array without --follow (one document, as every
    // command), one object a line while following.
    let mut collected: Vec<serde_json::Value> = Vec::new();
    let pause = if t.is_local() {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(2)
    };
    // FilterLogEvents allows 5 calls a second per account and region, shared
    // with everything else there: pages are read at most 4 a second, and a
    // throttled read waits longer each time before it asks again.
    let mut last_call: Option<tokio::time::Instant> = None;
    let mut told = false;
    loop {
        let mut token: Option<String> = None;
        let mut backoff = Duration::from_millis(500);
        loop {
            if let Some(at) = last_call {
                tokio::time::sleep_until(at + MIN_CALL_INTERVAL).await;
            }
            last_call = Some(tokio::time::Instant::now());
            let page = client
                .filter_log_events()
                .log_group_name(&group)
                .start_time(start)
                .set_next_token(token.clone())
                .send()
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    use aws_sdk_cloudwatchlogs::error::ProvideErrorMetadata;
                    match e.code() {
                        Some("ResourceNotFoundException") => bail!(
                            "no log group {group}: stack {stack} runs no Metabase service here (not created yet, or destroyed); `mbstack status {stack}` shows it, and check --region"
                        ),
                        Some("ThrottlingException") if backoff < Duration::from_secs(30) => {
                            tokio::time::sleep(backoff).await;
                            backoff *= 2;
                            continue;
                        }
                        _ => return Err(e).context(format!("reading the log group {group}")),
                    }
                }
            };
            for e in page.events() {
                let (Some(ts), Some(id)) = (e.timestamp(), e.event_id()) else {
                    continue;
                };
                if printed.contains_key(id) {
                    continue;
                }
                let stream = e.log_stream_name().unwrap_or("");
                let message = e.message().unwrap_or("");
                let as_json = || json!({"timestamp": ts, "task": task_of(stream), "stream": stream, "message": message.trim_end()});
                match (output, follow) {
                    (Output::Text, _) => println!("{}", line(ts, stream, message)),
                    (Output::Json, true) => println!("{}", as_json()),
                    (Output::Json, false) => collected.push(as_json()),
                }
                newest = newest.max(ts);
                printed.insert(id.to_string(), ts);
            }
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        if !follow {
            if output == Output::Json {
                println!("{}", serde_json::Value::Array(collected));
            }
            if printed.is_empty() && output == Output::Text {
                eprintln!(
                    "no log lines of stack {stack} since {} (a wider --since shows older ones)",
                    line(first, "", "").trim()
                );
            }
            return Ok(());
        }
        // Following a group with nothing in it yet: said once, not silence.
        if !told && printed.is_empty() && output == Output::Text {
            eprintln!(
                "no log lines of stack {stack} since {} yet; following: new lines show as Metabase writes them (Ctrl-C stops)",
                line(first, "", "").trim()
            );
        }
        told = true;
        start = (newest - LATE_WINDOW_MS).max(first);
        printed.retain(|_, ts| *ts >= start);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

/// How far back each read while following starts before the newest event
/// seen: an event CloudWatch takes in late (with an older timestamp) within
/// it is still shown, once.
const LATE_WINDOW_MS: i64 = 120_000;

/// The least time between two FilterLogEvents calls (AWS allows 5 a second
/// per account and region, for every caller there together).
const MIN_CALL_INTERVAL: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_number_and_a_unit_and_names_the_flag_otherwise() {
        assert_eq!(parse_since("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_since("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_since("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_since("1d"), Ok(Duration::from_secs(86_400)));
        for bad in ["", "h", "10", "1.5h", "-1h", "10x", "99999999999999999999m"] {
            let e = parse_since(bad).expect_err(bad);
            assert!(e.starts_with("--since:"), "{bad}: {e}");
        }
        assert!(parse_since("400d").unwrap_err().contains("year"));
    }

    #[test]
    fn a_line_has_the_utc_time_the_task_and_the_message() {
        assert_eq!(
            line(
                1_764_583_384_000,
                "metabase/metabase/0123456789abcdef",
                "Metabase Initialization COMPLETE\n"
            ),
            "2025-12-01T10:03:04Z 01234567 Metabase Initialization COMPLETE"
        );
    }
}
