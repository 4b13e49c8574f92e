//! The README's `mbstack` examples, run exactly as written, in the README's
//! order, after its own `mbstack local up --port 4566`: the README cannot drift
//! from the CLI again.

use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::*;

/// README lines not run here, and why: each must still be in the README.
const NOT_RUN: [(&str, &str); 4] = [
    (
        "mbstack deploy --region eu-west-1",
        "builds five release Lambdas for arm64 (~15 min each here); deploy is run by tests/deploy.rs",
    ),
    (
        "mbstack deploy --notify",
        "builds the Lambdas as the line before; --notify is run by tests/deploy.rs",
    ),
    (
        "mbstack deploy --hosted-zones",
        "builds the Lambdas as the lines before; --hosted-zones is run by tests/deploy.rs",
    ),
    (
        "mbstack deploy --skip-functions",
        "needs the functions shipped by `cargo lambda deploy` (the lines before it)",
    ),
];

/// A shell line's words: quotes and backslashes as sh reads them; a word
/// starting with `#` starts a comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                word.extend(chars.by_ref().take_while(|&q| q != '\''));
            }
            '"' => {
                in_word = true;
                while let Some(q) = chars.next() {
                    match q {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        q => word.push(q),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Every `mbstack …` command in the README's `sh` blocks, continuation lines
/// joined, as (the line as written, its words).
fn readme_commands() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(
        mbstack_core::source_dir(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .expect("README.md");
    let mut out = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        pending.push_str(line.trim_end_matches('\\'));
        if line.ends_with('\\') {
            pending.push(' ');
            continue;
        }
        let full = std::mem::take(&mut pending);
        if full.starts_with("mbstack ") {
            let words = shell_words(&full);
            out.push((full, words));
        }
    }
    out
}

#[test]
fn shell_words_read_as_sh_does() {
    assert_eq!(
        shell_words("mbstack schedule set --repair 'cron(0 3 * * ? *)'  # nightly"),
        vec![
            "mbstack",
            "schedule",
            "set",
            "--repair",
            "cron(0 3 * * ? *)"
        ]
    );
    assert_eq!(
        shell_words(r#"a "b \"c\"" d\ e"#),
        vec!["a", "b \"c\"", "d e"]
    );
}

#[test]
fn the_readme_examples_run_as_written() {
    let commands = readme_commands();
    for (skipped, why) in NOT_RUN {
        assert!(
            commands.iter().any(|(l, _)| l.starts_with(skipped)),
            "{skipped:?} is no longer in the README: take it out of NOT_RUN ({why})"
        );
    }
    let work = std::env::temp_dir().join(format!("mbstack-readme-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("spec.json"), r#"{"stack": "analytics"}"#).unwrap();

    let mut emulator = None;
    let mut ran = 0;
    for (line, words) in &commands {
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        if NOT_RUN.iter().any(|(s, _)| line.starts_with(s)) {
            continue;
        }
        if args.starts_with(&["local", "up"]) {
            let port: u16 = args
                .iter()
                .skip_while(|a| **a != "--port")
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap_or(4566);
            emulator = Some(start_emulator_with(&args, port));
            ran += 1;
            continue;
        }
        // After `mbstack local up`, as the line it prints says: the emulator
        // by AWS_ENDPOINT_URL (no credentials or region needed).
        let endpoint = emulator.as_ref().map(|e| e.endpoint.clone());
        let mut cmd = Command::new(BIN);
        cmd.args(&args).current_dir(&work).env_remove("AWS_PROFILE");
        if let Some(e) = &endpoint {
            cmd.env("AWS_ENDPOINT_URL", e);
        }
        let asks = args.first() == Some(&"down") && !args.contains(&"--yes");
        let (code, out) = if asks {
            // It asks first: a person types the stack's name.
            let mut t = Terminal::spawn(&mut cmd, 100);
            assert!(
                t.wait_for("Type the stack name", Duration::from_secs(60)),
                "{line}: {:#?}",
                t.lines()
            );
            let stack = args.get(1).copied().unwrap_or("");
            t.type_in(&format!("{stack}\n"));
            let code = t.wait(Duration::from_secs(300));
            (code, t.lines().join("\n"))
        } else {
            let o = cmd.stdin(Stdio::null()).output().expect("mbstack runs");
            (o.status.code(), text(&o))
        };
        assert_eq!(code, Some(0), "the README's `{line}` failed:\n{out}");
        // What the comments promise, where a wrong answer could still exit 0.
        if args.first() == Some(&"watch") {
            assert!(out.contains("succeeded"), "{line}:\n{out}");
        }
        if args.first() == Some(&"down") {
            assert!(
                out.contains("final snapshot mbstack-analytics-final-"),
                "{line}:\n{out}"
            );
        }
        ran += 1;
    }
    assert!(
        emulator.is_some(),
        "the README no longer starts the emulator"
    );
    assert_eq!(
        ran,
        commands.len() - NOT_RUN.len(),
        "every README command but {NOT_RUN:?} runs"
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// The README's first set-up command, `cargo run --bin mbstack -- local demo`
/// (the binary cargo builds for it): applies, shows, plans, destroys and
/// checks nothing is left, naming tiers as everywhere else and resources by name.
#[test]
fn the_readme_demo_command_runs() {
    let readme = std::fs::read_to_string(
        mbstack_core::source_dir(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .expect("README.md");
    assert!(
        readme.contains("cargo run --bin mbstack -- local demo"),
        "the README's set-up command changed: run that one here"
    );
    let o = Command::new(BIN)
        .args(["local", "demo"])
        .stdin(Stdio::null())
        .output()
        .expect("mbstack runs");
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("Demo passed"), "{out}");
    let created: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Created ("))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert!(created.len() > 20, "{out}");
    for tier in ["network", "database", "load balancer", "app"] {
        assert!(
            created.iter().any(|l| l.starts_with(&format!("  {tier} "))),
            "no {tier} line: {out}"
        );
    }
    assert!(
        // The name column: after the tier (13) and kind (17) columns.
        created
            .iter()
            .all(|l| !l.get(34..).unwrap_or("").starts_with("arn:")),
        "names, not ARNs: {out}"
    );
}
