//! What the CLI tests share: the binary, the emulator of `mbstack local up`
//! (killed when dropped, even on panic) and the binary in a pseudo-terminal.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_mbstack");

pub struct Emulator {
    child: Child,
    pub endpoint: String,
}

impl Emulator {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, as a test runner's timeout or `kill -9` does.
    pub fn kill_outright(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mbstack local up` on a free port.
pub fn start_emulator() -> Emulator {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    start_emulator_with(&["local", "up", "--port", &port.to_string()], port)
}

/// The emulator started by `args` (a `local up` command line) listening on `port`.
pub fn start_emulator_with(args: &[&str], port: u16) -> Emulator {
    let mut child = Command::new(BIN)
        .args(args)
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
    let e = Emulator {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the emulator came up");
    e
}

/// `mbstack ARGS --endpoint-url <the emulator> --region us-east-1`.
pub fn mbstack(e: &Emulator, args: &[&str]) -> Output {
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

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The binary in a pseudo-terminal `cols` columns wide (standard input, output
/// and error all on it), as a person runs it.
pub struct Terminal {
    pub child: Child,
    master: std::fs::File,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    pub fn spawn(cmd: &mut Command, cols: u16) -> Terminal {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize {
            ws_row: 50,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors we then own; the size is read.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned only here.
        let (master, slave) = unsafe {
            (
                std::fs::File::from_raw_fd(master),
                OwnedFd::from_raw_fd(slave),
            )
        };
        let child = cmd
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("mbstack runs in the terminal");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, into) = (master.try_clone().unwrap(), seen.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the child and every copy of the other side are gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            master,
            seen,
        }
    }

    /// What the terminal shows so far, escape sequences removed, as lines (a
    /// carriage return or a newline ends one).
    pub fn lines(&self) -> Vec<String> {
        let raw = String::from_utf8_lossy(&self.seen.lock().unwrap()).to_string();
        let mut plain = String::new();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                // CSI: ESC [ parameters… final byte in @..~; other escapes: one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for f in chars.by_ref() {
                        if ('@'..='~').contains(&f) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            } else {
                plain.push(c);
            }
        }
        plain
            .split(['\r', '\n'])
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Every place where the terminal (`cols` wide, replaying what it was sent
    /// bit by bit, so that lines later redrawn are seen too) wrapped a line in
    /// the middle of a word: the two halves.
    pub fn wraps_mid_word(&self, cols: u16) -> Vec<String> {
        let raw = self.seen.lock().unwrap().clone();
        // Tall enough that nothing scrolls away; indicatif moves the cursor
        // relative to where it drew.
        let (Some(height), Some(width)) = (
            std::num::NonZeroU16::new(2000),
            std::num::NonZeroU16::new(cols),
        ) else {
            return vec!["no width".into()];
        };
        let mut vt = vt100::Parser::new(height, width, 0);
        let mut found = Vec::new();
        for chunk in raw.chunks(256) {
            vt.process(chunk);
            let screen = vt.screen();
            let rows: Vec<String> = screen.rows(0, cols).collect();
            for (i, row) in rows.iter().enumerate() {
                let Some(next) = rows.get(i + 1) else { break };
                if !screen.row_wrapped(i as u16) {
                    continue;
                }
                // (A row's trailing blanks are not in its text: a full row ends
                // with a character.)
                let (end, start) = (row.chars().last(), next.chars().next());
                if row.chars().count() == usize::from(cols)
                    && end.is_some_and(|c| !c.is_whitespace())
                    && start.is_some_and(|c| !c.is_whitespace())
                {
                    let pair = format!("{row:?} / {next:?}");
                    if !found.contains(&pair) {
                        found.push(pair);
                    }
                }
            }
        }
        found
    }

    /// Waits until some line contains `what`.
    pub fn wait_for(&self, what: &str, within: Duration) -> bool {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if self.lines().iter().any(|l| l.contains(what)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Types `text` (a person at the keyboard).
    pub fn type_in(&mut self, text: &str) {
        use std::io::Write;
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Ctrl-C: SIGINT to the process.
    pub fn interrupt(&self) {
        // SAFETY: a signal to our own child.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
    }

    /// Its exit code, waiting at most `within` (killed after that).
    pub fn wait(&mut self, within: Duration) -> Option<i32> {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if let Ok(Some(s)) = self.child.try_wait() {
                // Let the reader drain what is left.
                std::thread::sleep(Duration::from_millis(200));
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
