//! A harness that starts the local stack (moto server, SeaweedFS) on free loopback ports.
//!
//! Servers run from the repository's virtual environment (`make venv` creates it). Each server
//! is started under a watchdog shell that kills it when the test process exits, so no test
//! depends on, or leaves behind, a running server.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root exists")
}

/// A program from the repository's virtual environment.
pub fn venv_bin(name: &str) -> Result<PathBuf> {
    let p = repo_root().join(".venv/bin").join(name);
    if !p.exists() {
        bail!("{} is missing: run `make venv` (or `make test`, which does it) to install the local stack", p.display());
    }
    Ok(p)
}

/// A program from the repository's API-test virtual environment (`.venv-api`, schemathesis).
pub fn api_venv_bin(name: &str) -> Result<PathBuf> {
    let p = repo_root().join(".venv-api/bin").join(name);
    if !p.exists() {
        bail!("{} is missing: run `make api-venv` (or `make test`, which does it) to install the API test tools", p.display());
    }
    Ok(p)
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind loopback").local_addr().expect("local addr").port()
}

/// A running server; killed on drop.
pub struct Server {
    child: Child,
    pub endpoint: String,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// The end of the server's log (what it printed), for a failing test's message.
    pub fn log_tail(&self) -> String {
        let Some(dir) = &self._dir else { return String::new() };
        let mut out = String::new();
        for entry in std::fs::read_dir(dir.path()).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
                out.push_str(&text.chars().rev().take(4000).collect::<String>().chars().rev().collect::<String>());
            }
        }
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM lets the watchdog's trap stop the server it started; SIGKILL would orphan it.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `program args…` under a watchdog that kills it once process `parent` is gone.
fn spawn_watched(program: &PathBuf, args: &[String], log: &std::path::Path) -> Result<Child> {
    spawn_watched_with(program, args, &[], log)
}

/// [`spawn_watched`] with extra environment variables for the program.
fn spawn_watched_with(program: &PathBuf, args: &[String], env: &[(String, String)], log: &std::path::Path) -> Result<Child> {
    let script = r#"parent=$1; shift; "$@" & child=$!; trap 'kill -9 $child 2>/dev/null; wait $child 2>/dev/null; exit 0' TERM INT; while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done; kill -9 "$child" 2>/dev/null; wait "$child" 2>/dev/null"#;
    let logf = std::fs::File::create(log)?;
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(child)
}

fn wait_http(endpoint: &str, path: &str, deadline: Duration, log: &std::path::Path) -> Result<()> {
    let start = Instant::now();
    let addr = endpoint.trim_start_matches("http://").to_string();
    while start.elapsed() < deadline {
        if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
            use std::io::{Read, Write};
            let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
            if s.write_all(req.as_bytes()).is_ok() {
                let mut buf = [0u8; 12];
                if s.read(&mut buf).map(|n| n > 0).unwrap_or(false) {
                    return Ok(());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    bail!(
        "server at {endpoint} did not answer within {deadline:?}; its log:\n{}",
        tail.chars().rev().take(2000).collect::<String>().chars().rev().collect::<String>()
    )
}

/// Starts moto server on a free loopback port and waits until it answers.
pub fn start_moto() -> Result<Server> {
    let bin = venv_bin("moto_server")?;
    let port = free_port();
    let dir = tempfile::Builder::new().prefix("tidemark-moto").tempdir()?;
    let log = dir.path().join("moto.log");
    let child = spawn_watched(&bin, &["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()], &log)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = Server { child, endpoint: endpoint.clone(), _dir: Some(dir) };
    wait_http(&endpoint, "/moto-api/", Duration::from_secs(60), &log)?;
    Ok(server)
}

/// Starts a server the test built (`tidemark serve`, for instance) with `args` and `env` under the
/// same watchdog, and waits until `http://127.0.0.1:port` answers `ready_path`. Its output goes
/// to a log file that a failure to start shows.
pub fn start_program(program: &PathBuf, args: &[String], env: &[(String, String)], port: u16, ready_path: &str) -> Result<Server> {
    let dir = tempfile::Builder::new().prefix("tidemark-program").tempdir()?;
    let log = dir.path().join("program.log");
    let child = spawn_watched_with(program, args, env, &log)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = Server { child, endpoint: endpoint.clone(), _dir: Some(dir) };
    wait_http(&endpoint, ready_path, Duration::from_secs(60), &log)?;
    Ok(server)
}

/// Starts SeaweedFS (`weed mini`) with every port on free loopback ports; returns its S3 endpoint.
pub fn start_seaweedfs() -> Result<Server> {
    let bin = venv_bin("weed")?;
    let dir = tempfile::Builder::new().prefix("tidemark-seaweed").tempdir()?;
    let log = dir.path().join("weed.log");
    let s3 = free_port();
    let mut args = vec![
        "mini".into(),
        format!("-dir={}", dir.path().display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        "-webdav=false".into(),
        "-admin.ui=false".into(),
        format!("-s3.port={s3}"),
    ];
    for flag in ["master.port", "volume.port", "filer.port", "admin.port", "debug.port", "webdav.port"] {
        args.push(format!("-{flag}={}", free_port()));
    }
    for flag in ["master.port.grpc", "volume.port.grpc", "filer.port.grpc", "s3.port.grpc", "admin.port.grpc"] {
        args.push(format!("-{flag}={}", free_port()));
    }
    let child = spawn_watched(&bin, &args, &log)?;
    let endpoint = format!("http://127.0.0.1:{s3}");
    let server = Server { child, endpoint: endpoint.clone(), _dir: Some(dir) };
    wait_http(&endpoint, "/", Duration::from_secs(60), &log)?;
    // The S3 gateway answers before the filer behind it is ready to store; give it a moment.
    std::thread::sleep(Duration::from_millis(1500));
    Ok(server)
}

/// A unique, valid resource name for one test (S3 bucket names allow lower-case, digits and dashes).
pub fn unique(prefix: &str) -> String {
    let n: u32 = rand::random();
    format!("{prefix}-{}-{n:08x}", std::process::id())
}
