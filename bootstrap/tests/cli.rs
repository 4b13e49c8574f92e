//! The CLI binary against the emulator of `mbstack local up`: up, status, a
//! failing run, down — exit codes and what a person reads.

use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::*;

#[test]
fn up_status_a_failing_run_and_down_through_the_binary() {
    let e = start_emulator();

    let up = mbstack(&e, &["up", "--stack", "cli"]);
    let out = text(&up);
    assert!(up.status.success(), "{out}");
    assert!(out.contains("Metabase: http://cli-alb"), "{out}");
    for tier in ["network", "database", "load balancer", "app"] {
        assert!(
            out.lines().any(|l| l.contains(&format!("✓ {tier} "))),
            "a line per tier, named as in the spec ({tier}): {out}"
        );
    }

    let status = mbstack(&e, &["status"]);
    let out = text(&status);
    assert!(status.status.success(), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("cli ") && l.contains("apply") && l.contains("succeeded")),
        "{out}"
    );

    // One stack's resources, read live.
    let one = mbstack(&e, &["status", "--stack", "cli"]);
    let out = text(&one);
    assert!(one.status.success(), "{out}");
    assert!(
        out.contains("nat-gateway") && out.contains("db-instance") && out.contains("ecs-service"),
        "{out}"
    );
    assert!(
        out.lines().filter(|l| l.contains(" ok ")).count() > 20,
        "{out}"
    );
    // The service's tasks; no stop reason for a healthy one.
    assert!(
        out.contains("service:   1/1 task(s) running") && !out.contains("last stop:"),
        "{out}"
    );
    assert!(!out.lines().any(|l| l.contains(" missing ")), "{out}");
    // A header: the stack, its last run and when it ended, then the columns.
    assert!(out.starts_with("stack cli\n"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains("last run:") && l.contains("apply succeeded, ended 20")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("TIER")),
        "{out}"
    );
    assert!(!out.contains("arn:aws:"), "names, not ARNs: {out}");

    // A bad spec: refused before any execution, the field named, exit code not 0.
    let bad = mbstack(&e, &["up", "--stack", "cli", "--set", "network.azCount=9"]);
    let out = text(&bad);
    assert!(!bad.status.success(), "{out}");
    assert!(
        out.contains("network.azCount") && !out.contains("arn:aws:states"),
        "{out}"
    );

    // A change AWS cannot make in place: refused with its reason; the rollback
    // says it undid nothing (the stack is intact) and status keeps the URL.
    let refused = mbstack(
        &e,
        &["up", "--stack", "cli", "--set", "network.cidr=10.1.0.0/16"],
    );
    let out = text(&refused);
    assert!(!refused.status.success(), "{out}");
    assert!(
        out.contains("Mbstack.Refused") && out.contains("cannot change in place"),
        "{out}"
    );
    assert!(
        out.contains("rolled back: nothing this run created"),
        "{out}"
    );
    assert!(!out.contains("network gone"), "{out}");
    let after = text(&mbstack(&e, &["status"]));
    assert!(
        after
            .lines()
            .any(|l| l.starts_with("cli ") && l.contains("http://cli-alb")),
        "the URL of a stack that still serves: {after}"
    );

    // A plan says what each change is.
    let plan = mbstack(
        &e,
        &["plan", "--stack", "cli", "--set", "app.desiredCount=2"],
    );
    let out = text(&plan);
    assert!(plan.status.success(), "{out}");
    assert!(out.contains("desired count 1 → 2"), "{out}");
    assert!(!out.contains("arn:aws:ecs"), "ARNs instead of names: {out}");

    let json = mbstack(&e, &["plan", "--stack", "cli", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON output");
    assert_eq!(v["status"], "SUCCEEDED");
    assert_eq!(v["output"]["changes"], serde_json::json!([]));

    // down refuses without a confirmation when nobody can answer.
    let refused = mbstack(&e, &["down", "--stack", "cli"]);
    assert!(!refused.status.success());
    assert!(text(&refused).contains("--yes"));
    let down = mbstack(&e, &["down", "--stack", "cli", "--yes"]);
    let out = text(&down);
    assert!(down.status.success(), "{out}");
    assert!(out.contains("destroy of cli succeeded"), "{out}");
    // Every deletion, and the snapshot that keeps the data, with how to restore it.
    for kind in [
        "nat-gateway",
        "db-instance",
        "load-balancer",
        "listener",
        "ecs-service",
        "vpc",
    ] {
        assert!(
            out.lines()
                .any(|l| l.contains("delete") && l.contains(kind)),
            "{kind} missing from the summary: {out}"
        );
    }
    assert!(
        out.contains("final snapshot mbstack-cli-final-")
            && out.contains("mbstack up cli --restore latest"),
        "{out}"
    );

    // up of a stack that is down with a final snapshot: never a guess. Without
    // a terminal to ask on, the flags; with --restore latest, the data back.
    let ask = mbstack(&e, &["up", "--stack", "cli"]);
    let out = text(&ask);
    assert!(!ask.status.success(), "{out}");
    assert!(
        out.contains("mbstack-cli-final-")
            && out.contains("--restore latest")
            && out.contains("--fresh")
            && out.contains("nothing was started"),
        "{out}"
    );
    let back = mbstack(&e, &["up", "--stack", "cli", "--restore", "latest"]);
    let out = text(&back);
    assert!(back.status.success(), "{out}");
    assert!(out.contains("restored from"), "{out}");
    let status = text(&mbstack(&e, &["status", "--stack", "cli"]));
    assert!(
        status
            .lines()
            .any(|l| l.contains("db-instance") && l.contains("restored from mbstack-cli-final-")),
        "{status}"
    );

    // On a terminal it asks; "n" starts an empty database.
    let down = mbstack(&e, &["down", "--stack", "cli", "--yes"]);
    assert!(down.status.success(), "{}", text(&down));
    let mut cmd = Command::new(BIN);
    cmd.args(["up", "--stack", "cli", "--endpoint-url", &e.endpoint])
        .env_remove("AWS_PROFILE");
    let mut t = Terminal::spawn(&mut cmd, 120);
    assert!(
        t.wait_for("Restore it? [Y/n]", Duration::from_secs(60)),
        "{:#?}",
        t.lines()
    );
    assert!(
        t.lines()
            .join("\n")
            .contains("final snapshot mbstack-cli-final-"),
        "{:#?}",
        t.lines()
    );
    t.type_in("n\n");
    assert_eq!(
        t.wait(Duration::from_secs(300)),
        Some(0),
        "{:#?}",
        t.lines()
    );
    let status = text(&mbstack(&e, &["status", "--stack", "cli"]));
    assert!(
        status
            .lines()
            .any(|l| l.contains("db-instance") && !l.contains("restored from")),
        "an empty database: {status}"
    );
}

#[test]
fn every_command_shows_an_example_in_its_help() {
    for cmd in [
        &["up"][..],
        &["plan"],
        &["down"],
        &["pause"],
        &["resume"],
        &["status"],
        &["watch"],
        &["audit"],
        &["validate"],
        &["local", "demo"],
        &["local", "up"],
    ] {
        let o = Command::new(BIN).args(cmd).arg("--help").output().unwrap();
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.contains("Example"), "{cmd:?} --help has no example:\n{t}");
    }
}

/// `mbstack` with no AWS credentials, profile or region anywhere: a fresh HOME
/// and no AWS_* variables (and no instance metadata to ask).
fn bare(args: &[&str]) -> Output {
    let home = std::env::temp_dir().join(format!("mbstack-bare-home-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&home);
    let mut c = Command::new(BIN);
    c.args(args).stdin(Stdio::null()).env("HOME", &home);
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .expect("mbstack runs")
}

/// What a new user met (issue 20), each through the binary: the emulator needs no
/// credentials; a missing credential or region is one line saying what to do;
/// a stack that does not exist is refused, not reported clean or destroyed;
/// schedules are checked before any call and one stack's do not replace
/// another's; two runs started in one second get two executions.
#[test]
fn a_new_user_gets_a_working_first_command_and_no_false_assurance() {
    let e = start_emulator();

    // The emulator's own credentials and region, with nothing configured.
    let status = bare(&["status", "--endpoint-url", &e.endpoint]);
    assert!(status.status.success(), "{}", text(&status));

    // Real AWS with nothing configured: one line each, naming the way out.
    let no_creds = bare(&["status", "--region", "eu-west-1"]);
    let out = String::from_utf8_lossy(&no_creds.stderr).to_string();
    assert!(!no_creds.status.success());
    assert_eq!(out.trim().lines().count(), 1, "{out}");
    assert!(
        out.contains("no AWS credentials")
            && out.contains("aws sso login")
            && out.contains("mbstack local up"),
        "{out}"
    );
    assert!(!out.contains("IMDS"), "{out}");
    let no_region = bare(&["status"]);
    let out = String::from_utf8_lossy(&no_region.stderr).to_string();
    assert!(!no_region.status.success());
    assert!(
        out.contains("no AWS region") && out.contains("--region"),
        "{out}"
    );

    // A stack that does not exist.
    let audit = mbstack(&e, &["audit", "--stack", "nope"]);
    let out = text(&audit);
    assert!(!audit.status.success(), "{out}");
    assert!(
        out.contains("no stack nope") && !out.contains("clean"),
        "{out}"
    );
    let down = mbstack(&e, &["down", "--stack", "nope", "--yes"]);
    let out = text(&down);
    assert!(!down.status.success(), "{out}");
    assert!(
        out.contains("no stack nope") && !out.contains("succeeded"),
        "{out}"
    );

    // A bad spec is refused before any execution, every problem on its own line,
    // with the field meant.
    let bad = mbstack(
        &e,
        &[
            "up",
            "--stack",
            "one",
            "--set",
            "app.desiredCont=2",
            "--set",
            "app.cpu=oops",
        ],
    );
    let out = text(&bad);
    assert!(!bad.status.success(), "{out}");
    assert!(
        !out.contains("arn:aws:states"),
        "an execution was started: {out}"
    );
    assert!(out.contains("a whole number"), "{out}");
    assert!(
        out.lines().any(
            |l| l.contains("app.desiredCont:") && l.contains("did you mean `app.desiredCount`")
        ),
        "{out}"
    );

    // Two stacks, and two runs of the second started at once.
    for stack in ["one", "two"] {
        let up = mbstack(&e, &["up", stack]);
        assert!(up.status.success(), "{}", text(&up));
    }
    let first = mbstack(&e, &["up", "--stack", "two", "--detach"]);
    let second = mbstack(&e, &["up", "--stack", "two", "--detach"]);
    assert!(
        first.status.success() && second.status.success(),
        "{}{}",
        text(&first),
        text(&second)
    );
    let (a, b) = (
        String::from_utf8_lossy(&first.stdout).trim().to_string(),
        String::from_utf8_lossy(&second.stdout).trim().to_string(),
    );
    assert!(
        a.starts_with("arn:") && b.starts_with("arn:") && a != b,
        "one execution for two runs: {a} {b}"
    );
    // A new stack's run, the moment after `--detach` (before its Prepare
    // took the lock): `status` and `watch` find it.
    let third = mbstack(&e, &["up", "--stack", "three", "--detach"]);
    assert!(third.status.success(), "{}", text(&third));
    let status = mbstack(&e, &["status", "three"]);
    assert!(
        status.status.success() && text(&status).contains("running:"),
        "{}",
        text(&status)
    );
    let watch = mbstack(&e, &["watch", "three"]);
    assert!(watch.status.success(), "{}", text(&watch));

    // Schedules: checked before any call; the stack must exist; one stack's
    // schedules leave another's alone.
    for (args, says) in [
        (
            &[
                "--pause",
                "cron(0 19 ? * MON-FRI *)",
                "--timezone",
                "Berlin/Europe",
            ][..],
            "did you mean Europe/Berlin",
        ),
        (
            &["--pause", "0 19 * * 1-5"][..],
            "not a schedule expression",
        ),
    ] {
        let mut all = vec!["schedule", "set", "--stack", "one"];
        all.extend_from_slice(args);
        let o = mbstack(&e, &all);
        assert!(!o.status.success(), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(says), "{args:?}: {}", text(&o));
    }
    let ghost = mbstack(
        &e,
        &[
            "schedule",
            "set",
            "--stack",
            "ghost",
            "--repair",
            "rate(1 day)",
        ],
    );
    assert!(
        !ghost.status.success() && text(&ghost).contains("no stack ghost"),
        "{}",
        text(&ghost)
    );
    for stack in ["one", "two"] {
        let o = mbstack(
            &e,
            &[
                "schedule",
                "set",
                "--stack",
                stack,
                "--repair",
                "cron(0 3 * * ? *)",
                "--timezone",
                "Europe/Berlin",
            ],
        );
        assert!(o.status.success(), "{stack}: {}", text(&o));
    }
    let again = mbstack(
        &e,
        &[
            "schedule",
            "set",
            "--stack",
            "one",
            "--repair",
            "cron(0 4 * * ? *)",
        ],
    );
    assert!(
        text(&again).contains("replaces cron(0 3 * * ? *) (Europe/Berlin)"),
        "{}",
        text(&again)
    );
    let list = text(&mbstack(&e, &["schedule", "list"]));
    assert!(
        list.contains("one-repair") && list.contains("two-repair"),
        "a stack's schedules were lost:\n{list}"
    );
}

/// Every option and argument of every command says what it is for, the
/// conventional aliases exist, and the shells get completions.
#[test]
fn every_option_has_help_and_the_conventions_are_there() {
    let commands: &[&[&str]] = &[
        &["deploy"],
        &["undeploy"],
        &["schedule", "set"],
        &["schedule", "list"],
        &["schedule", "remove"],
        &["up"],
        &["apply"],
        &["plan"],
        &["down"],
        &["destroy"],
        &["pause"],
        &["resume"],
        &["audit"],
        &["status"],
        &["watch"],
        &["local", "demo"],
        &["local", "up"],
        &["validate"],
        &["completions"],
    ];
    for cmd in commands {
        let o = Command::new(BIN).args(*cmd).arg("--help").output().unwrap();
        assert!(o.status.success(), "{cmd:?} --help");
        let t = String::from_utf8_lossy(&o.stdout).to_string();
        let mut in_list = false;
        for line in t.lines() {
            if line.ends_with(':') && !line.starts_with(' ') {
                in_list = matches!(line, "Options:" | "Arguments:");
                continue;
            }
            let l = line.trim_start();
            if !in_list || !(l.starts_with('-') || l.starts_with('<') || l.starts_with('[')) {
                continue;
            }
            let help = l.split_once("  ").map(|(_, h)| h.trim()).unwrap_or("");
            assert!(
                !help.is_empty() && !help.starts_with("[default"),
                "{cmd:?}: an option without help: {line:?}\n{t}"
            );
        }
    }
    // Commands that call no AWS do not offer AWS's options; every command
    // prints JSON on --output json.
    for cmd in [
        &["validate"][..],
        &["local", "demo"],
        &["local", "up"],
        &["completions"],
    ] {
        let o = Command::new(BIN).args(cmd).arg("--help").output().unwrap();
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(
            !t.contains("--region") && !t.contains("--endpoint-url"),
            "{cmd:?} lists AWS options it does not use:\n{t}"
        );
    }
    for cmd in commands {
        let o = Command::new(BIN).args(*cmd).arg("--help").output().unwrap();
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(
            t.contains("--output <OUTPUT>"),
            "{cmd:?}: no --output:\n{t}"
        );
    }
    let down = Command::new(BIN).args(["down", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&down.stdout).contains("-y, --yes"));
    let bash = Command::new(BIN)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    let script = String::from_utf8_lossy(&bash.stdout);
    assert!(
        bash.status.success() && script.contains("_mbstack()") && script.contains("schedule"),
        "{script}"
    );
}

/// In a terminal 80 columns wide: the live view and the summary keep every ARN
/// on one line; Ctrl-C stops following (exit 130) and says how to follow again;
/// `status` shows the run in progress; `watch` follows it to its end, and then
/// says there is none; `--output json` on status and audit.
#[test]
fn ctrl_c_stops_following_and_watch_takes_the_run_up_again() {
    let e = start_emulator();
    let run_in_terminal = |args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .args(["--endpoint-url", &e.endpoint])
            .env_remove("AWS_PROFILE");
        Terminal::spawn(&mut cmd, 80)
    };

    let mut up = run_in_terminal(&["up", "one"]);
    let code = up.wait(Duration::from_secs(300));
    let lines = up.lines();
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("succeeded")), "{lines:#?}");
    // Names, not ARNs (an ARN is wider than half the screen); no word, and so no
    // ARN, broken over two lines, in the live view or the summary.
    assert!(!lines.iter().any(|l| l.contains("arn:")), "{lines:#?}");
    let wraps = up.wraps_mid_word(80);
    assert!(
        wraps.is_empty(),
        "lines wrap mid-word at 80 columns: {wraps:#?}"
    );

    // Ctrl-C once the run is under way.
    let mut up = run_in_terminal(&["up", "two"]);
    assert!(
        up.wait_for("network", Duration::from_secs(60)),
        "{:#?}",
        up.lines()
    );
    up.interrupt();
    let code = up.wait(Duration::from_secs(20));
    let lines = up.lines();
    assert_eq!(code, Some(130), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stopped following; the run goes on: two-apply-")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("mbstack watch two")),
        "{lines:#?}"
    );

    // The run goes on: status shows it, watch follows it to its end.
    let status = mbstack(&e, &["status"]);
    let out = text(&status);
    assert!(
        out.lines()
            .any(|l| l.starts_with("two ") && l.contains("running") && l.contains("since 20")),
        "{out}"
    );
    let json = mbstack(&e, &["status", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON status");
    let two = v
        .as_array()
        .and_then(|a| a.iter().find(|s| s["stack"] == "two"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(two["running"]["action"], "apply", "{v}");
    let watch = mbstack(&e, &["watch", "two"]);
    let out = text(&watch);
    assert!(watch.status.success(), "{out}");
    assert!(out.contains("apply of two succeeded"), "{out}");
    assert!(out.contains("Metabase: http://two-alb"), "{out}");
    let again = mbstack(&e, &["watch", "two"]);
    assert!(
        again.status.success()
            && text(&again)
                .contains("no run of two in progress; the last: apply succeeded, ended 20"),
        "{}",
        text(&again)
    );
    let ghost = mbstack(&e, &["watch", "ghost"]);
    assert!(
        !ghost.status.success() && text(&ghost).contains("no stack ghost"),
        "{}",
        text(&ghost)
    );

    let audit = mbstack(&e, &["audit", "two", "--output", "json"]);
    let findings: serde_json::Value = serde_json::from_slice(&audit.stdout).expect("JSON audit");
    assert!(audit.status.success(), "{}", text(&audit));
    assert_eq!(findings, serde_json::json!([]));
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid …; comm may hold spaces: read after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// `mbstack local up` killed outright (SIGKILL: no cleanup runs) leaves no moto
/// server behind: a test that times out, or a user's `kill -9`, orphaned one.
#[test]
fn a_killed_emulator_leaves_no_moto_server_behind() {
    let mut e = start_emulator();
    let owner = e.pid();
    let moto: Vec<u32> = children_of(owner)
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains("moto.server"))
                .unwrap_or(false)
        })
        .collect();
    assert_eq!(moto.len(), 1, "one moto server under mbstack local up");
    e.kill_outright();
    let alive = || std::path::Path::new(&format!("/proc/{}", moto[0])).exists();
    let t0 = std::time::Instant::now();
    while alive() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    // A zombie (exited, not yet reaped by init) is gone for this purpose.
    let state = std::fs::read_to_string(format!("/proc/{}/stat", moto[0])).unwrap_or_default();
    let zombie = state
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    assert!(
        !alive() || zombie,
        "moto (pid {}) outlived its owner by 10 s",
        moto[0]
    );
}
