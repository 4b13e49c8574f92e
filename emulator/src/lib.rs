//! The local AWS emulator: moto's server, pinned, installed on first use into a
//! cached virtualenv, started as a plain process on a free loopback port, and
//! stopped when the handle is dropped.
//!
//! One server per [`Moto`] handle: tests each start their own (about 0.4 s and
//! 55 MB each), so they run in parallel without sharing any state.

mod acm;
mod asl;
mod deploying;
mod ec2;
mod ecs;
mod events;
mod faults;
mod front_door;
mod http;
pub mod journal;
mod moto;
pub mod node_tools;
mod protocol;
mod realism;
mod rotation;
mod rules;
mod scheduler;
mod sfn_history;
mod sns;
mod state;
mod xml;

pub use asl::problems as asl_problems;
pub use faults::FaultClass;
pub use front_door::{Bound, FrontDoor};
pub use state::ecs::EcsFault;
pub use state::realism::create_critical_path;
pub use state::{LambdaError, LambdaFn, LambdaFuture};

use std::fs::{self, File};
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};

/// The moto release every test and `mbstack local` run against.
pub const MOTO_VERSION: &str = "5.2.5";
/// The emulator's region.
pub const REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("cannot find Python 3.9+ (tried {0}): install python3 and pip, or set MBSTACK_PYTHON")]
    NoPython(String),

    #[error("installing moto[server]=={MOTO_VERSION} failed ({0}); see {1}")]
    Install(String, PathBuf),
    #[error("moto did not answer on 127.0.0.1:{port} within {secs} s; its log: {log}")]
    NotReady { port: u16, secs: u64, log: PathBuf },
    #[error("emulator I/O: {0}")]
    Io(#[from] io::Error),
    #[error("emulator request {0} failed: {1}")]
    Request(String, String),
}

/// Where mbstack keeps its cache: `$MBSTACK_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/mbstack`, else `~/.cache/mbstack`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("MBSTACK_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("mbstack");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("mbstack")
}

/// How to run the pinned moto: a Python interpreter, plus a `PYTHONPATH` when moto
/// was installed with `pip --target` (no venv module on the machine).
#[derive(Debug, Clone)]
pub struct Install {
    pub python: PathBuf,
    pub pythonpath: Option<PathBuf>,
}

/// Installs the pinned moto on first use (a virtualenv, or `pip --target` where
/// Python has no venv module) and says how to run it. Safe to call from several
/// processes at once: a file lock serializes the install.
pub fn ensure_installed() -> Result<Install, EmulatorError> {
    let root = cache_dir();
    let venv = root.join(format!("moto-{MOTO_VERSION}"));
    let target = root.join(format!("moto-{MOTO_VERSION}-site"));
    let found = || -> Option<Install> {
        if venv.join(".mbstack-installed").exists() {
            return Some(Install {
                python: venv.join("bin").join("python"),
                pythonpath: None,
            });
        }
        let marker = target.join(".mbstack-installed");
        let python = fs::read_to_string(marker).ok()?;
        Some(Install {
            python: PathBuf::from(python.trim()),
            pythonpath: Some(target.clone()),
        })
    };
    if let Some(i) = found() {
        return Ok(i);
    }
    fs::create_dir_all(&root)?;
    let lock = File::create(root.join("install.lock"))?;
    lock.lock()?;
    if let Some(i) = found() {
        return Ok(i);
    }
    let log_path = root.join(format!("moto-{MOTO_VERSION}-install.log"));
    let log = File::create(&log_path)?;
    let python = find_python()?;
    let package = format!("moto[server]=={MOTO_VERSION}");
    eprintln!(
        "mbstack: installing {package} into {} (once)",
        root.display()
    );
    let _ = fs::remove_dir_all(&venv);
    let venv_ok = run_logged(
        Command::new(&python).args(["-m", "venv"]).arg(&venv),
        &log,
        &log_path,
    )
    .is_ok()
        && run_logged(
            Command::new(venv.join("bin").join("python")).args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--quiet",
                &package,
            ]),
            &log,
            &log_path,
        )
        .is_ok();
    if venv_ok {
        File::create(venv.join(".mbstack-installed"))?;
    } else {
        // Debian's python3 without python3-venv: pip alone can still install.
        let _ = fs::remove_dir_all(&venv);
        let _ = fs::remove_dir_all(&target);
        run_logged(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "--quiet",
                    "--target",
                ])
                .arg(&target)
                .arg(&package),
            &log,
            &log_path,
        )?;
        fs::write(target.join(".mbstack-installed"), &python)?;
    }
    found().ok_or_else(|| EmulatorError::Install("the install left no marker".into(), log_path))
}

fn find_python() -> Result<String, EmulatorError> {
    let candidates: Vec<String> = match std::env::var("MBSTACK_PYTHON") {
        Ok(p) => vec![p],
        Err(_) => vec!["python3".into(), "python".into()],
    };
    for c in &candidates {
        let ok = Command::new(c)
            .args([
                "-c",
                "import sys, venv; sys.exit(0 if sys.version_info >= (3, 9) else 1)",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Ok(c.clone());
        }
    }
    Err(EmulatorError::NoPython(candidates.join(", ")))
}

fn run_logged(cmd: &mut Command, log: &File, log_path: &Path) -> Result<(), EmulatorError> {
    let status = cmd
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(EmulatorError::Install(
            format!("{cmd:?} exited with {status}"),
            log_path.to_path_buf(),
        ))
    }
}

/// A free loopback port (the OS picks it; we release it for the child to take).
pub fn free_port() -> Result<u16, EmulatorError> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running moto server; killed when dropped.
#[derive(Debug)]
pub struct Moto {
    child: Child,
    /// moto's standard input: it exits when this closes, so it never outlives
    /// its owner, even one killed outright (SIGKILL runs no `Drop`).
    _lifeline: Option<std::process::ChildStdin>,
    port: u16,
    log: PathBuf,
}

/// Starts moto's server after a thread that ends the process once standard
/// input reaches its end (the owner's end of the pipe closed: the owner is
/// gone, however it died), and after the emulator's hooks into moto
/// (`moto_hooks.py`: what only moto's own process can see).
fn moto_script() -> String {
    format!(
        "import os, sys, threading\n\
def _lifeline():\n    sys.stdin.buffer.read()\n    os._exit(0)\n\
threading.Thread(target=_lifeline, daemon=True).start()\n\
{}\n\
from moto.server import main\n\
main(sys.argv[1:])\n",
        include_str!("moto_hooks.py")
    )
}

/// How to start the server.
#[derive(Debug, Clone, Default)]
pub struct MotoOptions {
    /// Port to listen on; a free one when None.
    pub port: Option<u16>,
    /// Where moto's Step Functions send Lambda invocations (`MOTO_PORT`): the port
    /// of the local Lambda endpoint in front of it.
    pub lambda_port: Option<u16>,
}

impl Moto {
    /// Starts a fresh server on a free port with Step Functions execution on.
    pub fn start() -> Result<Self, EmulatorError> {
        Self::start_with(MotoOptions::default())
    }

    pub fn start_with(opts: MotoOptions) -> Result<Self, EmulatorError> {
        let install = ensure_installed()?;
        let mut last = None;
        // A free port can be taken between our probe and moto's bind: try again.
        for _ in 0..3 {
            let port = match opts.port {
                Some(p) => p,
                None => free_port()?,
            };
            let log = std::env::temp_dir().join(format!("mbstack-moto-{port}.log"));
            let out = File::create(&log)?;
            let mut cmd = Command::new(&install.python);
            if let Some(path) = &install.pythonpath {
                cmd.env("PYTHONPATH", path);
            }
            let script = moto_script();
            cmd.args(["-c", &script, "-H", "127.0.0.1", "-p", &port.to_string()])
                .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
                // moto issues a DNS-validated certificate 60 s after the request,
                // record or not; the front door issues it as ACM does, once its
                // validation record exists (`crate::acm`).
                .env("MOTO_ACM_VALIDATION_WAIT", "315360000")
                .env("MOTO_PORT", opts.lambda_port.unwrap_or(port).to_string())
                .stdin(Stdio::piped())
                .stdout(out.try_clone()?)
                .stderr(out);
            let mut child = cmd.spawn()?;
            let lifeline = child.stdin.take();
            let mut moto = Moto {
                child,
                _lifeline: lifeline,
                port,
                log,
            };
            match moto.wait_ready(Duration::from_secs(30)) {
                Ok(()) => {
                    moto.configure()?;
                    return Ok(moto);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(EmulatorError::NotReady {
            port: 0,
            secs: 30,
            log: PathBuf::new(),
        }))
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), EmulatorError> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(_)) = self.child.try_wait() {
                break; // exited: port taken, or a broken install
            }
            if http::request(self.port, "GET", "/moto-api/", "").is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(EmulatorError::NotReady {
            port: self.port,
            secs: limit.as_secs(),
            log: self.log.clone(),
        })
    }

    fn configure(&self) -> Result<(), EmulatorError> {
        self.post(
            "/moto-api/config",
            r#"{"stepfunctions": {"execute_state_machine": true}}"#,
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Drops every resource (all services, all accounts) and restores the config.
    pub fn reset(&self) -> Result<(), EmulatorError> {
        self.post("/moto-api/reset", "")?;
        self.configure()
    }

    fn post(&self, path: &str, body: &str) -> Result<(), EmulatorError> {
        match http::request(self.port, "POST", path, body) {
            Ok((status, _)) if status < 300 => Ok(()),
            Ok((status, text)) => Err(EmulatorError::Request(
                path.into(),
                format!("HTTP {status}: {text}"),
            )),
            Err(e) => Err(EmulatorError::Request(path.into(), e.to_string())),
        }
    }

    /// An AWS configuration pointed at this server: its region and dummy
    /// credentials, never the user's real ones.
    pub async fn sdk_config(&self) -> aws_types::SdkConfig {
        sdk_config_for(&self.endpoint()).await
    }
}

/// An AWS configuration for an emulator at `endpoint`.
pub async fn sdk_config_for(endpoint: &str) -> aws_types::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "mbstack-emulator",
        ))
        .load()
        .await
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}

/// The whole local emulator: moto behind our front door. Clients use
/// [`Emulator::endpoint`] (the front door), never moto's port.
pub struct Emulator {
    pub front: FrontDoor,
    pub moto: Moto,
}

impl Emulator {
    /// moto on a free port, the front door on `port` (or a free one).
    pub fn start_on(port: Option<u16>) -> Result<Self, EmulatorError> {
        // The front door's port first: moto's Step Functions invoke Lambda there.
        let bound = FrontDoor::bind(port)?;
        let moto = Moto::start_with(MotoOptions {
            port: None,
            lambda_port: Some(bound.port()),
        })?;
        let front = FrontDoor::serve(bound, moto.port())?;
        Ok(Self { front, moto })
    }

    pub fn start() -> Result<Self, EmulatorError> {
        Self::start_on(None)
    }

    /// Keeps the whole account as it is now under `name` (every service but
    /// Step Functions, whose state machine stays as it is), to be put back by
    /// [`Emulator::restore`]: a test's fast path to an account it built once.
    /// Call it when nothing is running.
    pub fn save(&self, name: &str) -> Result<(), EmulatorError> {
        self.moto
            .post(&format!("/moto-api/mbstack/save?name={name}"), "")?;
        self.front.save_state(name);
        Ok(())
    }

    /// Puts back the account [`Emulator::save`] kept under `name`, as if
    /// nothing had happened since (Step Functions' executions aside), and
    /// clears the front door's test knobs.
    pub fn restore(&self, name: &str) -> Result<(), EmulatorError> {
        if !self.front.restore_state(name) {
            return Err(EmulatorError::Request(
                format!("restore {name}"),
                "nothing saved under that name".into(),
            ));
        }
        self.moto
            .post(&format!("/moto-api/mbstack/restore?name={name}"), "")
    }

    pub fn endpoint(&self) -> String {
        self.front.endpoint()
    }

    pub async fn sdk_config(&self) -> aws_types::SdkConfig {
        sdk_config_for(&self.endpoint()).await
    }
}
