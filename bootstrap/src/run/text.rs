//! Text for people: moments, resource names instead of ARNs, lines fitted to
//! the terminal.

/// A moment as people read it: `2026-11-30 20:56 UTC`.
pub fn when(unix_seconds: i64) -> String {
    jiff::Timestamp::from_second(unix_seconds)
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// A resource's name rather than its whole ARN, where the ARN ends with one
/// (`…:service/cluster/metabase` → `metabase`; `…:loadbalancer/app/name/0123abcd…` → `name`;
/// a listener `…:listener/app/name/<lb id>/<its id>` → `name/<its id>`, so that
/// two listeners of one load balancer are told apart).
pub fn short_id(id: &str) -> std::borrow::Cow<'_, str> {
    use std::borrow::Cow;
    if !id.starts_with("arn:") {
        return Cow::Borrowed(id);
    }
    let parts: Vec<&str> = id.split('/').collect();
    let last = parts.last().copied().unwrap_or(id);
    let hex = |s: &str| s.len() >= 12 && s.chars().all(|c| c.is_ascii_hexdigit());
    let n = parts.len();
    if hex(last) && n >= 4 && hex(parts[n - 2]) {
        Cow::Owned(format!("{}/{last}", parts[n - 3]))
    } else if hex(last) && n >= 3 {
        Cow::Borrowed(parts[n - 2])
    } else if n >= 2 {
        Cow::Borrowed(last)
    } else {
        Cow::Borrowed(id.rsplit(':').next().unwrap_or(id))
    }
}

/// `text` with each ARN in it replaced by the name it ends with (an ARN is
/// wider than half a terminal).
pub fn shorten_arns(text: &str) -> String {
    text.split(' ')
        .map(|word| {
            let Some(at) = word.find("arn:") else {
                return word.to_string();
            };
            let (before, arn) = word.split_at(at);
            let end = arn.trim_end_matches([',', ';', ')', '.']);
            let after = &arn[end.len()..];
            let name = match short_id(end) {
                // An ARN without a path: its last `:` part.
                n if n == end => std::borrow::Cow::Borrowed(end.rsplit(':').next().unwrap_or(end)),
                n => n,
            };
            format!("{before}{name}{after}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The width to fit lines to: the terminal's, when standard output is one.
pub fn terminal_width() -> Option<usize> {
    let term = console::Term::stdout();
    term.is_term().then(|| usize::from(term.size().1))
}

/// `head` and `tail` on one line when it fits in `width`; else `tail` on the
/// lines below, indented and broken between words (a terminal breaks a long
/// line anywhere, even in a name).
pub fn fit(head: String, tail: &str, width: Option<usize>) -> Vec<String> {
    let one = format!("{head} {tail}");
    let Some(width) = width.filter(|&w| one.chars().count() > w) else {
        return vec![one];
    };
    let indent = "          ";
    let mut out = vec![head];
    let mut line = String::new();
    for word in tail.split(' ') {
        if !line.is_empty()
            && indent.len() + line.chars().count() + 1 + word.chars().count() > width
        {
            out.push(format!("{indent}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push(format!("{indent}{line}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_instead_of_arns() {
        assert_eq!(
            short_id("arn:aws:ecs:us-east-1:1:service/cli-cluster/metabase"),
            "metabase"
        );
        assert_eq!(
            short_id("arn:aws:elasticloadbalancing:us-east-1:1:loadbalancer/app/cli-alb/50dc6c495c0c9188"),
            "cli-alb"
        );
        // Two listeners of one load balancer: its name and their own IDs.
        assert_eq!(
            short_id("arn:aws:elasticloadbalancing:us-east-1:1:listener/app/cli-alb/50dc6c495c0c9188/f2f7dc8efc522ab2"),
            "cli-alb/f2f7dc8efc522ab2"
        );
        assert_eq!(
            short_id(
                "arn:aws:elasticloadbalancing:us-east-1:1:targetgroup/cli-tg/73e2d6bc24d8a067"
            ),
            "cli-tg"
        );
        assert_eq!(short_id("arn:aws:rds:us-east-1:1:db:cli-db"), "cli-db");
        assert_eq!(short_id("vpc-0123"), "vpc-0123");
        assert_eq!(
            shorten_arns("1 task(s) of arn:aws:ecs:us-east-1:1:task-definition/s-metabase:3, on arn:aws:secretsmanager:us-east-1:1:secret:rds!db-1-ab."),
            "1 task(s) of s-metabase:3, on rds!db-1-ab."
        );
    }

    #[test]
    fn long_lines_break_between_words_under_their_head() {
        let head = "    create  network       subnet          subnet-0123:".to_string();
        assert_eq!(fit(head.clone(), "10.0.0.0/20 in a", Some(80)).len(), 1);
        let lines = fit(
            head.clone(),
            "10.0.128.0/20 in us-east-1a and more words here",
            Some(60),
        );
        assert_eq!(lines[0], head);
        assert!(lines.iter().all(|l| l.chars().count() <= 60), "{lines:?}");
        assert_eq!(
            lines[1..]
                .iter()
                .map(|l| l.trim())
                .collect::<Vec<_>>()
                .join(" "),
            "10.0.128.0/20 in us-east-1a and more words here"
        );
        // Not on a terminal: one line, whatever its length.
        assert_eq!(fit(head, &"x ".repeat(80), None).len(), 1);
    }
}
