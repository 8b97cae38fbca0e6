//! A harness that starts the local stacks (moto server, SeaweedFS, MiniStack) on free loopback ports.
//!
//! Servers run from the repository's virtual environments (`make venv` creates them: `.venv` for
//! moto and SeaweedFS, `.venv-ministack` for MiniStack). Each server is started under a watchdog
//! shell that kills it when the test process exits, so no test depends on, or leaves behind, a
//! running server.

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
    venv_program(".venv", name)
}

/// A program from one of the repository's virtual environments.
fn venv_program(venv: &str, name: &str) -> Result<PathBuf> {
    let p = repo_root().join(venv).join("bin").join(name);
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

/// A program from the repository's catalog-test virtual environment (`.venv-catalog`, DuckDB).
pub fn catalog_venv_bin(name: &str) -> Result<PathBuf> {
    let p = repo_root().join(".venv-catalog/bin").join(name);
    if !p.exists() {
        bail!("{} is missing: run `make catalog-venv` (or `make test`, which does it) to install DuckDB", p.display());
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

impl Server {
    /// CPU seconds (user and system) the server has used so far: the watchdog's children, read
    /// from `/proc` (Linux only; 0 elsewhere). The load test reports the emulator's share with it.
    pub fn cpu_seconds(&self) -> f64 {
        let watchdog = self.child.id();
        let children = std::fs::read_to_string(format!("/proc/{watchdog}/task/{watchdog}/children")).unwrap_or_default();
        children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()).map(process_cpu_seconds).sum()
    }
}

/// CPU seconds (user and system) of one process, from `/proc/<pid>/stat`; 0 if it cannot be read.
pub fn process_cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name is in parentheses and may hold spaces; the fields after it are fixed.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else { return 0.0 };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name; the
    // kernel counts them in USER_HZ, which is 100 on every Linux this runs on.
    (ticks(11) + ticks(12)) / 100.0
}

/// Spawns `program args…` (with `env` added to its environment) under a watchdog that kills it
/// once process `parent` is gone.
fn spawn_watched(program: &PathBuf, args: &[String], env: &[(&str, String)], log: &std::path::Path) -> Result<Child> {
    let script = r#"parent=$1; shift; "$@" & child=$!; trap 'kill -9 $child 2>/dev/null; wait $child 2>/dev/null; exit 0' TERM INT; while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 1; done; kill -9 "$child" 2>/dev/null; wait "$child" 2>/dev/null"#;
    let logf = std::fs::File::create(log)?;
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("watchdog")
        .arg(std::process::id().to_string())
        .arg(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
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
    let child = spawn_watched(&bin, &["-H".into(), "127.0.0.1".into(), "-p".into(), port.to_string()], &[], &log)?;
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
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let child = spawn_watched(program, args, &env, &log)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = Server { child, endpoint: endpoint.clone(), _dir: Some(dir) };
    wait_http(&endpoint, ready_path, Duration::from_secs(60), &log)?;
    Ok(server)
}

/// Starts SeaweedFS (`weed mini`) with every port on free loopback ports; returns its S3 endpoint.
///
/// A port picked free can be taken by another test's server before weed binds it, and then its
/// volume server never registers (every put fails with "no volume server capacity"): a start
/// that accepts no write is stopped and tried again on other ports, three times at most.
pub fn start_seaweedfs() -> Result<Server> {
    start_seaweedfs_inner(None)
}

/// [`start_seaweedfs`] with a KMS provider of SeaweedFS's own, backed by the KMS at
/// `kms_endpoint` (moto's): writes that name a key of that KMS for SSE-KMS are then stored (and
/// encrypted by SeaweedFS with a data key from it), where a plain start answers them with 500
/// "KMS is not configured". SeaweedFS reads its KMS providers from its S3 configuration file,
/// which also turns on request authentication: the file names the test kit's credentials and
/// keeps anonymous requests allowed, as a plain start has them.
pub fn start_seaweedfs_with_kms(kms_endpoint: &str) -> Result<Server> {
    start_seaweedfs_inner(Some(kms_endpoint))
}

fn start_seaweedfs_inner(kms_endpoint: Option<&str>) -> Result<Server> {
    let mut failures = Vec::new();
    for _ in 0..3 {
        match try_start_seaweedfs(kms_endpoint) {
            Ok(server) => return Ok(server),
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    bail!("SeaweedFS did not start in three attempts:\n{}", failures.join("\n---\n"))
}

fn try_start_seaweedfs(kms_endpoint: Option<&str>) -> Result<Server> {
    let bin = venv_bin("weed")?;
    let dir = tempfile::Builder::new().prefix("tidemark-seaweed").tempdir()?;
    let log = dir.path().join("weed.log");
    let s3 = free_port();
    let mut config = None;
    if let Some(kms) = kms_endpoint {
        let all = ["Admin", "Read", "Write", "List", "Tagging"];
        let body = serde_json::json!({
            "identities": [
                {"name": "anonymous", "actions": all},
                {"name": "tidemark", "credentials": [{"accessKey": "test", "secretKey": "test"}], "actions": all},
            ],
            "kms": {
                "default_provider": "local-kms",
                "providers": {"local-kms": {"type": "aws", "region": "us-east-1", "endpoint": kms, "access_key": "test", "secret_key": "test"}},
            },
        });
        let path = dir.path().join("s3.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&body)?)?;
        config = Some(format!("-s3.config={}", path.display()));
    }
    let mut args = vec![
        "mini".into(),
        format!("-dir={}", dir.path().display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        "-webdav=false".into(),
        "-admin.ui=false".into(),
        format!("-s3.port={s3}"),
        // Left to itself, weed sizes its volume count as free disk / 1 GiB, and every bucket is
        // a collection that needs volumes of its own: on a machine with little free disk, puts
        // then fail with InternalError ("no volume server capacity"). Small sparse volumes fix it.
        "-master.volumeSizeLimitMB=64".into(),
        "-volume.max=400".into(),
    ];
    args.extend(config);
    for flag in ["master.port", "volume.port", "filer.port", "admin.port", "debug.port", "webdav.port"] {
        args.push(format!("-{flag}={}", free_port()));
    }
    for flag in ["master.port.grpc", "volume.port.grpc", "filer.port.grpc", "s3.port.grpc", "admin.port.grpc"] {
        args.push(format!("-{flag}={}", free_port()));
    }
    let child = spawn_watched(&bin, &args, &[], &log)?;
    let endpoint = format!("http://127.0.0.1:{s3}");
    let server = Server { child, endpoint: endpoint.clone(), _dir: Some(dir) };
    wait_http(&endpoint, "/", Duration::from_secs(60), &log)?;
    // The S3 gateway answers before the filer and volume server behind it can store, so the
    // server is ready only once an object has been written.
    wait_writable(&endpoint, Duration::from_secs(45), &log)?;
    Ok(server)
}

/// Writes (then removes) a probe object through anonymous S3 requests until one succeeds.
fn wait_writable(endpoint: &str, deadline: Duration, log: &std::path::Path) -> Result<()> {
    let addr = endpoint.trim_start_matches("http://").to_string();
    let send = |method: &str, path: &str, body: &[u8]| -> Option<u16> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
        let head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n", body.len());
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(body).ok()?;
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).ok()?;
        std::str::from_utf8(&buf[9..12]).ok()?.parse().ok()
    };
    let start = Instant::now();
    while start.elapsed() < deadline {
        let bucket = send("PUT", "/tidemark-ready-probe", b"");
        if matches!(bucket, Some(200 | 409)) && send("PUT", "/tidemark-ready-probe/probe", b"ready") == Some(200) {
            send("DELETE", "/tidemark-ready-probe/probe", b"");
            send("DELETE", "/tidemark-ready-probe", b"");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    bail!(
        "SeaweedFS at {endpoint} accepted no write within {deadline:?}; its log:\n{}",
        tail.chars().rev().take(2000).collect::<String>().chars().rev().collect::<String>()
    )
}

/// Starts MiniStack (S3, SQS, EventBridge and DynamoDB in one process) on a free loopback port
/// and waits until it is ready.
///
/// Its quirks, as the conformance suites state them: S3's change events carry no `version-id`,
/// their keys are not URL-encoded and their `time` has milliseconds; there is no CloudWatch, so
/// the SQS age metric is never available; ReceiveMessage walks the queue, so a backlog above
/// about 12,000 messages slows every consumer; and it keeps every event in memory.
pub fn start_ministack() -> Result<Server> {
    let bin = venv_program(".venv-ministack", "ministack")?;
    let port = free_port();
    let dir = tempfile::Builder::new().prefix("tidemark-ministack").tempdir()?;
    let log = dir.path().join("ministack.log");
    let env = [
        // Its default is 0.0.0.0; nothing here may listen beyond the loopback interface.
        ("BIND_HOST", "127.0.0.1".to_string()),
        ("GATEWAY_PORT", port.to_string()),
        ("SERVICES", "sqs,events,s3,dynamodb".to_string()),
        ("LOG_LEVEL", "WARNING".to_string()),
        // It creates a directory per bucket even when it keeps objects in memory, and would
        // persist state under /tmp/ministack-*; both stay in the test's own directory instead.
        ("S3_DATA_DIR", dir.path().join("s3").display().to_string()),
        ("STATE_DIR", dir.path().join("state").display().to_string()),
    ];
    let child = spawn_watched(&bin, &[], &env, &log)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    let server = Server { child, endpoint: endpoint.clone(), _dir: Some(dir) };
    wait_http(&endpoint, "/_ministack/ready", Duration::from_secs(60), &log)?;
    Ok(server)
}

/// A unique, valid resource name for one test (S3 bucket names allow lower-case, digits and dashes).
pub fn unique(prefix: &str) -> String {
    let n: u32 = rand::random();
    format!("{prefix}-{}-{n:08x}", std::process::id())
}
