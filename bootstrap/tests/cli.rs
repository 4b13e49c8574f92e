//! The CLI binary against the emulator of `mbstack local up`: up, status, a
//! failing run, down — exit codes and what a person reads.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_mbstack");

struct Emulator {
    child: Child,
    endpoint: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_emulator() -> Emulator {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(BIN)
        .args(["local", "up", "--port", &port.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("mbstack local up starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("Ctrl-C stops it") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the emulator came up");
    Emulator {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    }
}

fn mbstack(e: &Emulator, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .args(["--endpoint-url", &e.endpoint, "--region", "us-east-1"])
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .expect("mbstack runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn up_status_a_failing_run_and_down_through_the_binary() {
    let e = start_emulator();

    let up = mbstack(&e, &["up", "--stack", "cli"]);
    let out = text(&up);
    assert!(up.status.success(), "{out}");
    assert!(out.contains("Metabase: http://cli-alb"), "{out}");
    assert!(
        out.contains("network") && out.contains("database") && out.contains("service"),
        "a line per tier: {out}"
    );

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
    assert!(!out.contains("MISSING"), "{out}");

    // A failing run: the cause is printed, the exit code is not 0.
    let bad = mbstack(&e, &["up", "--stack", "cli", "--set", "network.azCount=9"]);
    let out = text(&bad);
    assert!(!bad.status.success(), "{out}");
    assert!(
        out.contains("Mbstack.InvalidSpec") && out.contains("network.azCount"),
        "{out}"
    );

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
        &["validate"],
        &["local", "demo"],
        &["local", "up"],
    ] {
        let o = Command::new(BIN).args(cmd).arg("--help").output().unwrap();
        let t = String::from_utf8_lossy(&o.stdout);
        assert!(t.contains("Example"), "{cmd:?} --help has no example:\n{t}");
    }
}
