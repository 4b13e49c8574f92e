//! `mbstack logs` through the binary, against the emulator of `mbstack local up`:
//! the lines of the stack's log group with their task, new lines while it
//! follows, and clear errors for a stack without logs and a bad --since.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{mbstack, start_emulator, text, BIN};

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Writes `message` to the stack's log group as the task `task` does.
async fn write(logs: &aws_sdk_cloudwatchlogs::Client, stack: &str, task: &str, message: &str) {
    write_at(logs, stack, task, message, now_ms()).await
}

/// Writes `message` with the timestamp `at` (ms): an event CloudWatch takes in
/// late carries its own, older time.
async fn write_at(
    logs: &aws_sdk_cloudwatchlogs::Client,
    stack: &str,
    task: &str,
    message: &str,
    at: i64,
) {
    let event = aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
        .timestamp(at)
        .message(message)
        .build()
        .expect("an event");
    logs.put_log_events()
        .log_group_name(format!("/mbstack/{stack}/metabase"))
        .log_stream_name(format!("metabase/metabase/{task}"))
        .log_events(event)
        .send()
        .await
        .expect("PutLogEvents");
}

#[test]
fn logs_shows_the_tasks_lines_and_follows_new_ones() {
    let emu = start_emulator();
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let config = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(&emu.endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_cloudwatchlogs::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load(),
    );
    let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
    let (stack, task) = ("tail", "0123456789abcdef0123456789abcdef");
    rt.block_on(async {
        logs.create_log_group()
            .log_group_name(format!("/mbstack/{stack}/metabase"))
            .send()
            .await
            .expect("CreateLogGroup");
        logs.create_log_stream()
            .log_group_name(format!("/mbstack/{stack}/metabase"))
            .log_stream_name(format!("metabase/metabase/{task}"))
            .send()
            .await
            .expect("CreateLogStream");
        write(&logs, stack, task, "Metabase Initialization COMPLETE").await;
    });

    // Without --follow: the line so far, with its task, then the command ends.
    let out = mbstack(&emu, &["logs", stack, "--since", "5m"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert!(
        lines[0].ends_with(" 01234567 Metabase Initialization COMPLETE"),
        "{stdout}"
    );

    // --output json: one document, each line with its task.
    let out = mbstack(&emu, &["logs", stack, "--since", "5m", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc.as_array().map(Vec::len), Some(1), "{doc}");
    assert_eq!(doc[0]["task"], serde_json::json!(task));
    assert_eq!(
        doc[0]["message"],
        serde_json::json!("Metabase Initialization COMPLETE")
    );

    // --follow: the line so far, then one written while it runs, once each.
    let mut child = Command::new(BIN)
        .args(["logs", stack, "--follow", "--endpoint-url", &emu.endpoint])
        .args(["--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mbstack logs --follow");
    let stdout = child.stdout.take().expect("its output");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the line written before");
    assert!(first.ends_with("Initialization COMPLETE"), "{first}");
    rt.block_on(write(&logs, stack, task, "GET /api/health 200 2.1 ms"));
    let next = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the line written while it follows");
    assert!(
        next.ends_with(" 01234567 GET /api/health 200 2.1 ms"),
        "{next}"
    );
    // An event taken in late, older than the newest shown: shown too, once.
    rt.block_on(write_at(
        &logs,
        stack,
        task,
        "a line ingested late",
        now_ms() - 60_000,
    ));
    let late = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the line ingested late");
    assert!(late.ends_with(" 01234567 a line ingested late"), "{late}");
    // Polled several times more: nothing printed twice.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rx.try_recv().ok(), None);
    let _ = child.kill();
    let _ = child.wait();

    // A stack without a log group, and a bad --since: the error names the fix.
    let out = mbstack(&emu, &["logs", "nothing-here"]);
    assert!(!out.status.success());
    let said = text(&out);
    assert!(
        said.contains("no log group /mbstack/nothing-here/metabase")
            && said.contains("mbstack status nothing-here"),
        "{said}"
    );
    // An empty log group says so (on standard error), and is no failure.
    rt.block_on(async {
        logs.create_log_group()
            .log_group_name("/mbstack/quiet/metabase")
            .send()
            .await
            .expect("CreateLogGroup");
    });
    let out = mbstack(&emu, &["logs", "quiet"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no log lines of stack quiet since"),
        "{}",
        text(&out)
    );
    let out = mbstack(&emu, &["logs", stack, "--since", "yesterday"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--since"), "{}", text(&out));
}
