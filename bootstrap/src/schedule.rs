//! What EventBridge Scheduler accepts, checked before any call: a schedule
//! expression (`at(…)`, `rate(…)` or `cron(…)`, as the Scheduler user guide's
//! "Schedule types" defines them) and an IANA time zone.

/// Checks a schedule expression; the error says what is wrong and shows the form.
pub fn check_expression(e: &str) -> Result<(), String> {
    let e = e.trim();
    if let Some(body) = e.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
        return check_rate(body);
    }
    if let Some(body) = e.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
        return check_cron(body);
    }
    if let Some(body) = e.strip_prefix("at(").and_then(|r| r.strip_suffix(')')) {
        return body
            .parse::<jiff::civil::DateTime>()
            .map(|_| ())
            .map_err(|_| {
                format!("{e}: write at(yyyy-mm-ddThh:mm:ss), e.g. at(2027-01-31T19:00:00)")
            });
    }
    Err(format!(
        "{e:?} is not a schedule expression: write cron(minutes hours day-of-month month day-of-week year), e.g. 'cron(0 19 ? * MON-FRI *)', or rate(value unit), e.g. 'rate(1 day)'"
    ))
}

fn check_rate(body: &str) -> Result<(), String> {
    let form = "write rate(value unit) with unit minute(s), hour(s) or day(s), e.g. rate(1 day), rate(12 hours)";
    let mut parts = body.split_whitespace();
    let (Some(n), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("rate({body}): {form}"));
    };
    let Ok(n) = n.parse::<u32>() else {
        return Err(format!(
            "rate({body}): the value must be a whole number from 1; {form}"
        ));
    };
    let ok = match (n, unit) {
        (0, _) => false,
        (1, u) => matches!(u, "minute" | "hour" | "day"),
        (_, u) => matches!(u, "minutes" | "hours" | "days"),
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "rate({body}): {form} (the unit is singular for 1, plural otherwise)"
        ))
    }
}

fn check_cron(body: &str) -> Result<(), String> {
    let fields: Vec<&str> = body.split_whitespace().collect();
    let form = "cron takes 6 fields: minutes hours day-of-month month day-of-week year, e.g. cron(0 19 ? * MON-FRI *)";
    if fields.len() != 6 {
        return Err(format!(
            "cron({body}) has {} field(s): {form}",
            fields.len()
        ));
    }
    let (dom, dow) = (fields[2], fields[4]);
    if (dom == "?") == (dow == "?") {
        return Err(format!(
            "cron({body}): one of day-of-month and day-of-week must be ? (not both, not neither); {form}"
        ));
    }
    let allowed = |f: &str, extra: &str| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || ",-*/".contains(c) || extra.contains(c))
    };
    let names = [
        "minutes",
        "hours",
        "day-of-month",
        "month",
        "day-of-week",
        "year",
    ];
    for (i, f) in fields.iter().enumerate() {
        let extra = match i {
            2 => "?LW",
            4 => "?L#",
            _ => "",
        };
        if !allowed(f, extra) {
            return Err(format!(
                "cron({body}): {} {f:?} is not valid; {form}",
                names[i]
            ));
        }
    }
    Ok(())
}

/// Checks a time zone against the IANA database (EventBridge Scheduler's), with
/// the closest names when it is not one.
pub fn check_timezone(tz: &str) -> Result<(), String> {
    if jiff::tz::db().get(tz).is_ok() {
        return Ok(());
    }
    let names: Vec<String> = jiff::tz::db().available().map(|n| n.to_string()).collect();
    let flipped: String = tz.split('/').rev().collect::<Vec<_>>().join("/");
    let hint = if names.contains(&flipped) {
        format!(": did you mean {flipped}?")
    } else {
        match mbstack_core::naming::closest(tz, names.iter().map(String::as_str)) {
            Some(n) => format!(": did you mean {n}?"),
            None => ": use an IANA name such as Europe/Berlin or America/New_York".into(),
        }
    };
    Err(format!("{tz:?} is not an IANA time zone{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_as_eventbridge_scheduler_takes_them() {
        for ok in [
            "cron(0 19 ? * MON-FRI *)",
            "cron(0 3 * * ? *)",
            "cron(15 10 ? * 6L 2027)",
            "rate(1 day)",
            "rate(12 hours)",
            "at(2027-01-31T19:00:00)",
        ] {
            assert_eq!(check_expression(ok), Ok(()), "{ok}");
        }
        for (bad, says) in [
            ("0 19 * * 1-5", "not a schedule expression"),
            ("cron(0 19 * * 1-5)", "5 field(s)"),
            ("cron(0 19 * * MON-FRI *)", "must be ?"),
            ("cron(0 19 ? * ? *)", "must be ?"),
            ("rate(1 days)", "singular"),
            ("rate(0 minutes)", "unit"),
            ("rate(five minutes)", "whole number"),
            ("at(tomorrow)", "at(yyyy"),
        ] {
            let e = check_expression(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(check_timezone("Europe/Berlin"), Ok(()));
        assert_eq!(check_timezone("UTC"), Ok(()));
        let e = check_timezone("Berlin/Europe").unwrap_err();
        assert!(e.contains("did you mean Europe/Berlin"), "{e}");
        let e = check_timezone("Europe/Berln").unwrap_err();
        assert!(e.contains("did you mean Europe/Berlin"), "{e}");
    }
}
