//! `make bench`: tidemark's protect and restore throughput against `s5cmd cp` on SeaweedFS, verify
//! throughput against s5cmd reading the same packs, the cost of encryption (protect and verify with
//! a vault KMS key ÷ without, with the KMS requests counted), the S3 Inventory reader against
//! `zcat`, and the restore planner's time and memory; prints a Markdown report on stdout.
//!
//! This is a benchmark, not a test: figures are reported, never asserted. It exits non-zero only
//! when a correctness check fails (a wrong object or row count) or a step cannot run. Progress
//! goes to stderr so that stdout holds the report alone (`make bench` tees it into
//! bench-report.md). Sizes can be lowered for a quick look with `TIDEMARK_BENCH_OBJECTS`,
//! `TIDEMARK_BENCH_RUNS`, `TIDEMARK_BENCH_INVENTORY_ROWS` and `TIDEMARK_BENCH_RESTORE_RECORDS`;
//! the report states what was run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tidemark_e2e::{s3, tidemark, tidemark_json};
use tidemark_testkit::harness::{start_moto, start_seaweedfs, start_seaweedfs_with_kms, venv_bin};

/// Local workers of `tidemark protect --wait`.
const WORKERS: usize = 4;
/// Requests each tidemark worker keeps in flight (`TIDEMARK_CONCURRENCY`).
const CONCURRENCY: usize = 4;
/// Size of every object of the protect benchmark.
const OBJECT_BYTES: usize = 4096;
/// Prefixes the source objects are spread over, so listing and planning see a realistic layout.
const PREFIXES: usize = 20;

/// What to run, from the environment with the sizes the issues ask for as defaults.
struct Config {
    objects: usize,
    runs: usize,
    inventory_rows: u64,
    /// Capture records of the larger restore-planner vault (the smaller has a tenth).
    restore_records: u64,
    exe_dir: PathBuf,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().map_err(|_| anyhow::anyhow!("{name}={v} is not a valid number")),
        Err(_) => Ok(default),
    }
}

fn main() -> ExitCode {
    let exe_dir = match std::env::current_exe() {
        Ok(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
        Err(e) => {
            eprintln!("bench: cannot find this executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The figures must come from the release binary built beside this one, never from a debug
    // build an inherited TIDEMARK_BIN might point at. The variable is set before the runtime
    // starts any thread.
    std::env::set_var("TIDEMARK_BIN", exe_dir.join("tidemark"));
    let cfg = match (
        env_or("TIDEMARK_BENCH_OBJECTS", 10_000usize),
        env_or("TIDEMARK_BENCH_RUNS", 3usize),
        env_or("TIDEMARK_BENCH_INVENTORY_ROWS", 10_000_000u64),
        env_or("TIDEMARK_BENCH_RESTORE_RECORDS", 1_000_000u64),
    ) {
        (Ok(objects), Ok(runs), Ok(inventory_rows), Ok(restore_records)) => Config {
            objects: objects.max(1),
            runs: runs.max(1),
            inventory_rows: inventory_rows.max(1),
            restore_records: restore_records.max(10),
            exe_dir,
        },
        (a, b, c, d) => {
            for e in [a.err(), b.err(), c.err(), d.err()].into_iter().flatten() {
                eprintln!("bench: {e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(bench(&cfg))
}

async fn bench(cfg: &Config) -> ExitCode {
    let started = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    println!("{}", header(cfg));

    let section = match protect_section(cfg, &mut failures).await {
        Ok(s) => s,
        Err(e) => {
            failures.push(format!("the protect benchmark could not run: {e:#}"));
            format!("## 1. Protect throughput against s5cmd (SeaweedFS)\n\nNot measured: {e:#}\n")
        }
    };
    println!("{section}");

    let section = match inventory_section(cfg, &mut failures) {
        Ok(s) => s,
        Err(e) => {
            failures.push(format!("the inventory benchmark could not run: {e:#}"));
            format!("## 2. S3 Inventory reader and planner\n\nNot measured: {e:#}\n")
        }
    };
    println!("{section}");

    let section = match restore_plan_section(cfg, &mut failures) {
        Ok(s) => s,
        Err(e) => {
            failures.push(format!("the restore planner benchmark could not run: {e:#}"));
            format!("## 3. Restore planner\n\nNot measured: {e:#}\n")
        }
    };
    println!("{section}");

    println!("## Correctness\n");
    if failures.is_empty() {
        println!("Every count check passed (see each section).\n");
    } else {
        println!("**FAILED:**\n");
        for f in &failures {
            println!("- {f}");
        }
        println!();
    }
    println!("Load average at the end: {}. The benchmark took {:.0} s.", loadavg(), started.elapsed().as_secs_f64());
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn header(cfg: &Config) -> String {
    let nproc = command_line("nproc", &[])
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.to_string()))
        .unwrap_or_else(|| "unknown".into());
    let rustc = command_line("rustc", &["--version"]).unwrap_or_else(|| "unknown".into());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    let mut h = String::new();
    let _ = writeln!(h, "# tidemark benchmark report\n");
    let _ = writeln!(h, "- Date: {}", chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC"));
    let _ = writeln!(h, "- Machine: {nproc} CPUs (`nproc`), {cpu}; {rustc}");
    let _ = writeln!(h, "- Load average at the start: {}", loadavg());
    let _ = writeln!(h, "- Command: `make bench` (release build; this text is also written to bench-report.md)");
    let _ = writeln!(h, "- tidemark binary: `{}`", cfg.exe_dir.join("tidemark").display());
    let _ = writeln!(
        h,
        "\n**Ratios are the figures to quote.** This machine is shared and noisy, so absolute seconds and rates are printed for context only; \
         both sides of each ratio ran on the same servers in the same run, interleaved."
    );
    h
}

/// The first line of a command's stdout, if it runs.
fn command_line(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).lines().next().unwrap_or("").trim().to_string())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// One `tidemark protect` run and what it reported.
struct ProtectRun {
    secs: f64,
    own_secs: f64,
    objects: u64,
    packs: u64,
    tasks: u64,
    vault_requests: u64,
    source_requests: u64,
    recovery_point: Option<String>,
    /// The vault key `init` reported, if the vault has one.
    kms_key: Option<String>,
    /// KMS requests of the protect alone (not its `init`), by operation, where a relay counted them.
    kms: BTreeMap<String, u64>,
}

/// Starts SeaweedFS and moto, runs the interleaved protect and s5cmd runs, and always stops the
/// servers afterwards, whatever happened in between.
async fn protect_section(cfg: &Config, failures: &mut Vec<String>) -> Result<String> {
    eprintln!("bench: starting SeaweedFS (S3) and moto (SQS, DynamoDB) on free loopback ports");
    let servers = (|| -> Result<_> {
        let weed = start_seaweedfs().context("starting SeaweedFS")?;
        let moto = start_moto().context("starting moto")?;
        // Section 1d's own SeaweedFS, with a KMS provider backed by moto's KMS, so that an
        // encrypted vault's SSE-KMS writes are stored; apart from the first one, whose S3
        // configuration file would turn on request authentication for sections 1 to 1c.
        let weed_kms = start_seaweedfs_with_kms(&moto.endpoint).context("starting SeaweedFS with a KMS provider")?;
        Ok((weed, moto, weed_kms))
    })();
    let result = match &servers {
        Ok((weed, moto, weed_kms)) => protect_runs(cfg, &weed.endpoint, &moto.endpoint, &weed_kms.endpoint, failures).await,
        Err(e) => Err(anyhow::anyhow!("{e:#}")),
    };
    stop_watched_servers();
    drop(servers);
    result
}

async fn protect_runs(cfg: &Config, weed: &str, moto: &str, weed_kms: &str, failures: &mut Vec<String>) -> Result<String> {
    let s3c = s3(weed).await;
    let src = "bench-source";
    let in_flight = WORKERS * CONCURRENCY;

    eprintln!("bench: writing {} local files of {OBJECT_BYTES} bytes", cfg.objects);
    let dir = tempfile::Builder::new().prefix("tidemark-bench-src").tempdir()?;
    write_source_files(dir.path(), cfg.objects)?;
    s3c.create_bucket().bucket(src).send().await.context("creating the source bucket")?;
    eprintln!("bench: uploading them into s3://{src} with s5cmd");
    let upload_secs = s5cmd(weed, 32, &["cp", "*", &format!("s3://{src}/")], Some(dir.path()))?;
    let listed = count_objects(&s3c, src).await?;
    if listed != cfg.objects {
        bail!("the source bucket holds {listed} objects after the upload, expected {}", cfg.objects);
    }

    let mut tm: Vec<ProtectRun> = Vec::new();
    let mut s5: Vec<f64> = Vec::new();
    let mut orders = Vec::new();
    for i in 1..=cfg.runs {
        // Alternating which side goes first spreads slow phases of the shared machine (and the
        // server's growing state) over both sides.
        let tidemark_first = i % 2 == 1;
        orders.push(if tidemark_first { "tidemark, then s5cmd" } else { "s5cmd, then tidemark" });
        for side in if tidemark_first { [0, 1] } else { [1, 0] } {
            if side == 0 {
                eprintln!("bench: run {i}/{}: tidemark protect", cfg.runs);
                // Plaintext packs: a plain SeaweedFS refuses vault writes that name a KMS key for
                // SSE-KMS, so section 1d measures the cost of a key on a SeaweedFS of its own.
                let site = Site { control: moto, s3: Some(weed) };
                let (vault, name) = (format!("bench-vault-{i}"), format!("bench-{i}"));
                tm.push(protect_once(cfg, site, src, &vault, &name, false, &format!("run {i}"), None, failures).await?);
            } else {
                eprintln!("bench: run {i}/{}: s5cmd cp", cfg.runs);
                s5.push(s5cmd_once(cfg, &s3c, weed, src, i, in_flight, failures).await?);
            }
        }
    }

    let n = cfg.objects as f64;
    let tm_rates: Vec<f64> = tm.iter().map(|r| n / r.secs).collect();
    let s5_rates: Vec<f64> = s5.iter().map(|s| n / s).collect();
    let ratios: Vec<f64> = tm_rates.iter().zip(&s5_rates).map(|(a, b)| a / b).collect();
    let per_1000 = |v: u64, objects: u64| 1000.0 * v as f64 / objects.max(1) as f64;
    let vault_per_1000: Vec<f64> = tm.iter().map(|r| per_1000(r.vault_requests, r.objects)).collect();
    let source_per_1000: Vec<f64> = tm.iter().map(|r| per_1000(r.source_requests, r.objects)).collect();

    let mut s = String::new();
    let _ = writeln!(s, "## 1. Protect throughput against s5cmd (SeaweedFS)\n");
    let _ = writeln!(
        s,
        "{} objects of {OBJECT_BYTES} bytes over {PREFIXES} prefixes, on one SeaweedFS server (S3) with moto for the control plane (SQS, DynamoDB); \
         {} interleaved runs per side, each into a fresh vault or destination bucket.\n",
        cfg.objects, cfg.runs
    );
    let _ = writeln!(s, "| | tidemark ÷ s5cmd (objects/s) | tidemark objects/s | s5cmd objects/s |");
    let _ = writeln!(s, "|---|---:|---:|---:|");
    let _ = writeln!(s, "| **median** | **{:.2}** | {:.0} | {:.0} |", median(&ratios), median(&tm_rates), median(&s5_rates));
    let _ = writeln!(
        s,
        "\nRequests tidemark sent to the vault per 1,000 objects: **{:.1}** (median; {} packs and {} tasks per run). \
         Requests to the source per 1,000 objects: {:.1}.\n",
        median(&vault_per_1000),
        tm.first().map(|r| r.packs).unwrap_or(0),
        tm.first().map(|r| r.tasks).unwrap_or(0),
        median(&source_per_1000)
    );
    let _ = writeln!(s, "| run | order | tidemark s (its own `seconds`) | tidemark objects/s | s5cmd s | s5cmd objects/s | ratio | vault requests / 1,000 |");
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for (i, ((r, s5s), order)) in tm.iter().zip(&s5).zip(&orders).enumerate() {
        let _ = writeln!(
            s,
            "| {} | {order} | {:.2} ({:.2}) | {:.0} | {:.2} | {:.0} | {:.2} | {:.1} |",
            i + 1,
            r.secs,
            r.own_secs,
            tm_rates[i],
            s5s,
            s5_rates[i],
            ratios[i],
            vault_per_1000[i]
        );
    }
    let _ = writeln!(
        s,
        "\n- tidemark: `tidemark protect --source s3://{src} --vault s3://bench-vault-N --workers {WORKERS} --wait --no-events --json` \
         with `TIDEMARK_CONCURRENCY={CONCURRENCY}` ({in_flight} requests in flight) and `TIDEMARK_TARGET_OBJECTS={}` (so every worker gets a partition), \
         after `tidemark init --local --no-kms-key --vault s3://bench-vault-N` (untimed; Object Lock vault created on SeaweedFS through `AWS_ENDPOINT_URL_S3`; plaintext packs, see 1d). \
         Its time is the whole process, start to exit: listing, planning, queueing, GETting every object, writing packs and index segments, \
         the control-table bookkeeping on moto and sealing the recovery point. `--no-events` because SeaweedFS has no bucket notifications.",
        (cfg.objects / WORKERS).max(1)
    );
    let _ = writeln!(
        s,
        "- s5cmd: `s5cmd --endpoint-url <seaweedfs> --numworkers {in_flight} cp 's3://{src}/*' s3://bench-copy-N/`, the whole process; \
         it copies each object server-side, so the bytes never leave the server, while tidemark reads every object and writes it into the vault."
    );
    let _ = writeln!(
        s,
        "- Correctness, every run: protect reported {n} objects and 0 failed, `tidemark ls s3://{src} --as-of <its recovery_point> --json` listed {n} keys, \
         and each s5cmd destination lists {n} objects{}.",
        if failures.is_empty() { "" } else { " (unless listed under Correctness below)" },
        n = cfg.objects
    );
    let _ = writeln!(s, "- Setup, for context: uploading the source with s5cmd (32 workers) took {upload_secs:.1} s.");
    match tm.first().and_then(|r| r.recovery_point.clone()) {
        Some(point) => s.push_str(&restore_runs(cfg, &s3c, weed, moto, src, dir.path(), &point, failures).await?),
        None => failures.push("no recovery point to restore from".into()),
    }
    // Each later part reports its own failure to run, so that one part cannot hide the others.
    let site = Site { control: moto, s3: Some(weed) };
    let runs: Vec<(String, String)> = (1..=cfg.runs).map(|i| (format!("bench-vault-{i}"), format!("bench-{i}"))).collect();
    match verify_runs(cfg, site, src, &runs, None, failures).await {
        Ok(pairs) => {
            let _ = writeln!(s, "\n## 1c. Verify throughput against s5cmd reads (SeaweedFS)\n");
            s.push_str(&verify_report(&pairs, site, src, "bench-vault-N", "bench-N", "The vault of each protect run of section 1", true));
        }
        Err(e) => {
            failures.push(format!("the verify benchmark could not run: {e:#}"));
            let _ = writeln!(s, "\n## 1c. Verify throughput against s5cmd reads (SeaweedFS)\n\nNot measured: {e:#}");
        }
    }
    match encryption_runs(cfg, weed_kms, moto, src, dir.path(), failures).await {
        Ok(e) => s.push_str(&e),
        Err(e) => {
            failures.push(format!("the encryption benchmark could not run: {e:#}"));
            let _ = writeln!(s, "\n## 1d. Cost of encryption\n\nNot measured: {e:#}");
        }
    }
    Ok(s)
}

/// Restores the first protect run's vault into fresh buckets, interleaved with s5cmd copying the
/// source bucket to fresh buckets and with s5cmd uploading the source's files from local disk
/// (one PutObject each, what a restore of small objects must send at least), at the same number
/// of requests in flight.
#[allow(clippy::too_many_arguments)]
async fn restore_runs(
    cfg: &Config,
    s3c: &aws_sdk_s3::Client,
    weed: &str,
    moto: &str,
    src: &str,
    source_dir: &Path,
    point: &str,
    failures: &mut Vec<String>,
) -> Result<String> {
    let in_flight = WORKERS * CONCURRENCY;
    let env: Vec<(&str, String)> = vec![
        ("AWS_ENDPOINT_URL_S3", weed.to_string()),
        ("TIDEMARK_NAME", "bench-1".into()),
        ("TIDEMARK_CONCURRENCY", CONCURRENCY.to_string()),
        ("TIDEMARK_RESTORE_TASK_OBJECTS", (cfg.objects / WORKERS).max(1).to_string()),
    ];
    let (mut tm, mut s5, mut up, mut requests, mut orders) = (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    const NAMES: [&str; 3] = ["tidemark", "s5cmd cp", "s5cmd upload"];
    for i in 1..=cfg.runs {
        // Each run starts with another of the three sides, so that each meets every phase.
        let sides = [(i - 1) % 3, i % 3, (i + 1) % 3];
        orders.push(sides.iter().map(|&k| NAMES[k]).collect::<Vec<_>>().join(", then "));
        for side in sides {
            if side == 2 {
                eprintln!("bench: restore run {i}/{}: s5cmd upload", cfg.runs);
                let dst = format!("bench-upload-{i}");
                s3c.create_bucket().bucket(&dst).send().await.with_context(|| format!("creating {dst}"))?;
                up.push(s5cmd(weed, in_flight, &["cp", "*", &format!("s3://{dst}/")], Some(source_dir))?);
                let uploaded = count_objects(s3c, &dst).await?;
                if uploaded != cfg.objects {
                    failures
                        .push(format!("restore run {i}: the s5cmd upload s3://{dst} holds {uploaded} objects, expected {}", cfg.objects));
                }
            } else if side == 0 {
                eprintln!("bench: restore run {i}/{}: tidemark restore", cfg.runs);
                let target = format!("bench-restored-{i}");
                let t = Instant::now();
                let r = tidemark_json(
                    moto,
                    &env,
                    &[
                        "restore",
                        "--source",
                        &format!("s3://{src}"),
                        "--vault",
                        "s3://bench-vault-1",
                        "--as-of",
                        point,
                        "--to",
                        &format!("s3://{target}"),
                        "--wait",
                        "--workers",
                        &WORKERS.to_string(),
                        "--json",
                    ],
                )?;
                tm.push(t.elapsed().as_secs_f64());
                let objects = r["objects"].as_u64().unwrap_or(0);
                let sent = r["requests"]["vault"].as_u64().unwrap_or(0) + r["requests"]["target"].as_u64().unwrap_or(0);
                requests.push((1000.0 * sent as f64 / objects.max(1) as f64, r["requests"]["vault"].as_u64().unwrap_or(0)));
                if objects != cfg.objects as u64 || r["verified"].as_u64() != Some(objects) || r["failed"].as_u64() != Some(0) {
                    failures.push(format!(
                        "restore run {i}: {} objects, {} verified, {} failed; expected {} of each but failed",
                        r["objects"], r["verified"], r["failed"], cfg.objects
                    ));
                }
                let restored = count_objects(s3c, &target).await?;
                if restored != cfg.objects {
                    failures.push(format!("restore run {i}: s3://{target} holds {restored} objects, expected {}", cfg.objects));
                }
            } else {
                eprintln!("bench: restore run {i}/{}: s5cmd cp", cfg.runs);
                s5.push(s5cmd_once(cfg, s3c, weed, src, 100 + i, in_flight, failures).await?);
            }
        }
    }
    let n = cfg.objects as f64;
    let tm_rates: Vec<f64> = tm.iter().map(|t| n / t).collect();
    let s5_rates: Vec<f64> = s5.iter().map(|t| n / t).collect();
    let up_rates: Vec<f64> = up.iter().map(|t| n / t).collect();
    let ratios: Vec<f64> = tm_rates.iter().zip(&s5_rates).map(|(a, b)| a / b).collect();
    let up_ratios: Vec<f64> = tm_rates.iter().zip(&up_rates).map(|(a, b)| a / b).collect();
    let up_over_cp: Vec<f64> = up_rates.iter().zip(&s5_rates).map(|(a, b)| a / b).collect();
    let per_1000: Vec<f64> = requests.iter().map(|(r, _)| *r).collect();
    let mut s = String::new();
    let _ = writeln!(s, "\n## 1b. Restore throughput against s5cmd (SeaweedFS)\n");
    let _ = writeln!(
        s,
        "The first protect run's vault restored as of its recovery point into a fresh bucket, against s5cmd copying the source bucket \
         bucket to bucket and against s5cmd uploading the same files from local disk into a fresh bucket, all with {in_flight} requests \
         in flight; {} interleaved runs per side.\n",
        cfg.runs
    );
    let _ = writeln!(
        s,
        "| | tidemark ÷ s5cmd cp (objects/s) | tidemark ÷ s5cmd upload | tidemark objects/s | s5cmd cp objects/s | s5cmd upload objects/s | tidemark requests / 1,000 objects |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        s,
        "| **median** | **{:.2}** | **{:.2}** | {:.0} | {:.0} | {:.0} | {:.0} |",
        median(&ratios),
        median(&up_ratios),
        median(&tm_rates),
        median(&s5_rates),
        median(&up_rates),
        median(&per_1000)
    );
    let _ = writeln!(
        s,
        "\nA restore of small objects sends at least one PutObject per object, so the upload is the rate this server stores such objects at \
         when nothing else is done: the upload ran at {:.2} × the bucket-to-bucket copy's objects/s (median of the runs), about the most \
         a restore's ratio to the copy can reach on this server.",
        median(&up_over_cp)
    );
    let _ = writeln!(
        s,
        "\n| run | order | tidemark s | s5cmd cp s | s5cmd upload s | ÷ cp | ÷ upload | requests / 1,000 (vault reads) |\n|---:|---|---:|---:|---:|---:|---:|---:|"
    );
    for (i, order) in orders.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {} | {order} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} ({}) |",
            i + 1,
            tm[i],
            s5[i],
            up[i],
            ratios[i],
            up_ratios[i],
            requests[i].0,
            requests[i].1
        );
    }
    let _ = writeln!(
        s,
        "\n- tidemark: `tidemark restore --source s3://{src} --vault s3://bench-vault-1 --as-of <point> --to s3://bench-restored-N --wait --workers {WORKERS} --json` \
         with `TIDEMARK_CONCURRENCY={CONCURRENCY}` and `TIDEMARK_RESTORE_TASK_OBJECTS={}`, the whole process: planning from the index segments, the \
         restore queue on moto, coalesced ranged GETs of the packs, one PUT per object with its SHA-256 (verified), the control-table bookkeeping.\n\
         - s5cmd cp: `s5cmd --numworkers {in_flight} cp 's3://{src}/*' s3://bench-copy-10N/`, one server-side CopyObject per object.\n\
         - s5cmd upload: `s5cmd --numworkers {in_flight} cp '*' s3://bench-upload-N/` in the directory of the source's files, one PutObject per object.\n\
         - Correctness, every run: the restore reported {n} objects, {n} verified and 0 failed, and the target, the copy and the upload each list {n} objects.",
        (cfg.objects / WORKERS).max(1),
        n = cfg.objects
    );
    Ok(s)
}

/// Requests in flight on both sides of each verify comparison: `TIDEMARK_CONCURRENCY` of
/// `tidemark verify` and `--numworkers` of the s5cmd read.
const VERIFY_IN_FLIGHT: usize = 16;

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// One `tidemark verify` of a vault and one raw s5cmd read of the same pack objects.
struct VerifyPair {
    vault: String,
    order: &'static str,
    verify_secs: f64,
    /// The `seconds` verify reported itself (without process start and exit).
    verify_own_secs: f64,
    /// Pack bytes verify read (its `bytes_read`).
    verify_bytes: u64,
    raw_secs: f64,
    /// Bytes of the pack objects, as listed, which the raw read fetched.
    raw_bytes: u64,
    packs: u64,
    /// KMS requests during the verify, by operation, where a relay counted them.
    kms: Option<BTreeMap<String, u64>>,
}

impl VerifyPair {
    fn verify_mib_s(&self) -> f64 {
        mib(self.verify_bytes) / self.verify_secs
    }
    fn raw_mib_s(&self) -> f64 {
        mib(self.raw_bytes) / self.raw_secs
    }
    fn ratio(&self) -> f64 {
        self.verify_mib_s() / self.raw_mib_s()
    }
}

/// For each (vault, deployment name), interleaved: `tidemark verify` over the whole vault and an
/// s5cmd read of its packs into an empty local directory, alternating which goes first.
async fn verify_runs(
    cfg: &Config,
    site: Site<'_>,
    src: &str,
    vaults: &[(String, String)],
    relay: Option<&KmsRelay>,
    failures: &mut Vec<String>,
) -> Result<Vec<VerifyPair>> {
    let s3c = s3(site.s3_endpoint()).await;
    let mut pairs = Vec::new();
    for (i, (vault, name)) in vaults.iter().enumerate() {
        let (packs, pack_bytes) = pack_objects(&s3c, vault, src).await?;
        if packs == 0 {
            failures.push(format!("verify of s3://{vault}: the vault holds no packs under v1/{src}/packs/"));
        }
        let verify_first = i % 2 == 0;
        let (mut verified, mut raw_secs) = ((f64::NAN, f64::NAN, 0, None), f64::NAN);
        for side in if verify_first { [0, 1] } else { [1, 0] } {
            if side == 0 {
                eprintln!("bench: tidemark verify --vault s3://{vault}");
                let before = relay.map(KmsRelay::counts).unwrap_or_default();
                let (secs, own, bytes) = verify_once(cfg, site, vault, name, packs, failures)?;
                verified = (secs, own, bytes, relay.map(|r| r.since(&before)));
            } else {
                eprintln!("bench: s5cmd read of the packs of s3://{vault}");
                raw_secs = raw_read_once(site.s3_endpoint(), vault, src, packs, pack_bytes, failures)?;
            }
        }
        let (verify_secs, verify_own_secs, verify_bytes, kms) = verified;
        if verify_bytes > pack_bytes || verify_bytes == 0 {
            failures.push(format!("verify of s3://{vault} read {verify_bytes} pack bytes of the {pack_bytes} listed"));
        }
        pairs.push(VerifyPair {
            vault: vault.clone(),
            order: if verify_first { "verify, then s5cmd" } else { "s5cmd, then verify" },
            verify_secs,
            verify_own_secs,
            verify_bytes,
            raw_secs,
            raw_bytes: pack_bytes,
            packs: packs as u64,
            kms,
        });
    }
    Ok(pairs)
}

/// Runs `tidemark verify --json` and checks its report: nothing damaged or missing, the whole
/// vault read (no sample), every listed pack read, one blob per protected object. Returns the
/// process's seconds, the seconds verify reported and the pack bytes it read.
fn verify_once(cfg: &Config, site: Site<'_>, vault: &str, name: &str, packs: usize, failures: &mut Vec<String>) -> Result<(f64, f64, u64)> {
    let env = site.env(name, VERIFY_IN_FLIGHT);
    let t = Instant::now();
    let out = tidemark(site.control, &env, &["verify", "--vault", &format!("s3://{vault}"), "--json"])?;
    let secs = t.elapsed().as_secs_f64();
    // Verify exits non-zero when it finds damage, and its report still says what: that is a
    // failed check to list, not a step that could not run.
    let text = String::from_utf8_lossy(&out.stdout);
    let r: Value = match serde_json::from_str(text.trim()) {
        Ok(r) => r,
        Err(_) => bail!("tidemark verify --vault s3://{vault} printed no report: {}", String::from_utf8_lossy(&out.stderr).trim()),
    };
    let u = |k: &str| r[k].as_u64();
    if !out.status.success() || r["ok"].as_bool() != Some(true) || u("damaged") != Some(0) {
        failures.push(format!(
            "verify of s3://{vault}: ok {}, {} damaged or missing (exit {}): {}",
            r["ok"],
            r["damaged"],
            out.status,
            r["problems"].to_string().chars().take(300).collect::<String>()
        ));
    }
    if r["sample"].as_f64() != Some(1.0) || u("packs") != Some(packs as u64) || u("packs_total") != Some(packs as u64) {
        failures.push(format!(
            "verify of s3://{vault}: read {} of {} packs at sample {}, expected all {packs} packs listed",
            r["packs"], r["packs_total"], r["sample"]
        ));
    }
    if u("blobs") != Some(cfg.objects as u64) {
        failures.push(format!("verify of s3://{vault}: checked {} blobs, expected one per object ({})", r["blobs"], cfg.objects));
    }
    Ok((secs, r["seconds"].as_f64().unwrap_or(f64::NAN), u("bytes_read").unwrap_or(0)))
}

/// The number and total size of the pack objects a vault holds for source bucket `src`.
async fn pack_objects(s3c: &aws_sdk_s3::Client, vault: &str, src: &str) -> Result<(usize, u64)> {
    let (mut n, mut bytes) = (0, 0u64);
    let mut pages = s3c.list_objects_v2().bucket(vault).prefix(format!("v1/{src}/packs/")).into_paginator().send();
    while let Some(page) = pages.next().await {
        for o in page.with_context(|| format!("listing the packs of {vault}"))?.contents() {
            n += 1;
            bytes += o.size().unwrap_or(0).max(0) as u64;
        }
    }
    Ok((n, bytes))
}

/// s5cmd reading every pack of a vault into an empty temporary directory, the whole process;
/// checks that it wrote as many files and bytes as the listing holds.
fn raw_read_once(endpoint: &str, vault: &str, src: &str, packs: usize, bytes: u64, failures: &mut Vec<String>) -> Result<f64> {
    let dir = tempfile::Builder::new().prefix("tidemark-bench-read").tempdir()?;
    let target = format!("{}/", dir.path().display());
    let secs = s5cmd(endpoint, VERIFY_IN_FLIGHT, &["cp", &format!("s3://{vault}/v1/{src}/packs/*"), &target], None)?;
    let (files, got) = tree_size(dir.path())?;
    if (files, got) != (packs, bytes) {
        failures
            .push(format!("s5cmd read of s3://{vault}: {files} files of {got} bytes, the listing holds {packs} packs of {bytes} bytes"));
    }
    Ok(secs)
}

/// (files, bytes) under a directory, recursively.
fn tree_size(dir: &Path) -> Result<(usize, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        if meta.is_dir() {
            let (f, b) = tree_size(&e.path())?;
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}

/// The verify comparison's tables (the medians with `summary`) and the commands behind them.
fn verify_report(pairs: &[VerifyPair], site: Site<'_>, src: &str, vault: &str, name: &str, what: &str, summary: bool) -> String {
    let ratios: Vec<f64> = pairs.iter().map(VerifyPair::ratio).collect();
    let v: Vec<f64> = pairs.iter().map(VerifyPair::verify_mib_s).collect();
    let r: Vec<f64> = pairs.iter().map(VerifyPair::raw_mib_s).collect();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{what} verified whole by `tidemark verify`, interleaved with s5cmd reading the same pack objects, both with {VERIFY_IN_FLIGHT} requests in flight; \
         one pair per vault, {} pairs.\n",
        pairs.len()
    );
    if summary {
        let _ = writeln!(s, "| | verify ÷ s5cmd read (MiB/s of packs) | verify MiB/s | s5cmd read MiB/s |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        let _ = writeln!(s, "| **median** | **{:.2}** | {:.1} | {:.1} |\n", median(&ratios), median(&v), median(&r));
    }
    let _ = writeln!(s, "| vault | order | packs (MiB) | verify s (its own `seconds`) | verify MiB/s | s5cmd s | s5cmd MiB/s | ratio | KMS requests of the verify |");
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---|");
    for (i, p) in pairs.iter().enumerate() {
        let _ = writeln!(
            s,
            "| {} | {} | {} ({:.1}) | {:.2} ({:.2}) | {:.1} | {:.2} | {:.1} | {:.2} | {} |",
            p.vault,
            p.order,
            p.packs,
            mib(p.raw_bytes),
            p.verify_secs,
            p.verify_own_secs,
            v[i],
            p.raw_secs,
            r[i],
            ratios[i],
            p.kms.as_ref().map(by_operation).unwrap_or_else(|| "not counted".into())
        );
    }
    let s3_env = if site.s3.is_some() { " and `AWS_ENDPOINT_URL_S3=<seaweedfs>`" } else { "" };
    let _ = writeln!(
        s,
        "\n- tidemark: `tidemark verify --vault s3://{vault} --json` with `TIDEMARK_NAME={name}`, `TIDEMARK_CONCURRENCY={VERIFY_IN_FLIGHT}`{s3_env}, \
         the whole process: listing the vault, reading and checking every recovery point and index segment, one ranged GET per pack (its first blob \
         to its last) and every blob's SHA-256 checked (after decrypting it, in an encrypted pack). Its MiB/s is the pack bytes it reports \
         (`bytes_read`) ÷ the process's seconds.\n\
         - s5cmd: `s5cmd --numworkers {VERIFY_IN_FLIGHT} cp 's3://{vault}/v1/{src}/packs/*' <empty temporary directory>/`, the whole process; \
         its MiB/s is the listed bytes of the pack objects ÷ its seconds. It only fetches the bytes (into the page cache), so the ratio is the \
         cost of checking them.\n\
         - Correctness, every pair: verify reported ok with 0 damaged or missing, sample 1, every pack under `v1/{src}/packs/` read \
         (`packs` = `packs_total` = the objects listed) and one blob per protected object, and no more pack bytes than listed; s5cmd wrote \
         as many files and bytes as the listing holds."
    );
    s
}

/// A TCP relay on 127.0.0.1 in front of moto that counts the KMS requests passing through it, by
/// operation (the `X-Amz-Target: TrentService.<Operation>` header of each request). The CLI
/// reports no KMS counts and takes no KMS endpoint of its own, so everything of the encryption
/// comparison goes through the relay, both sides alike, and what it costs falls on both.
struct KmsRelay {
    endpoint: String,
    counts: Arc<Mutex<BTreeMap<String, u64>>>,
}

impl KmsRelay {
    fn start(upstream: &str) -> Result<Self> {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the relay to 127.0.0.1")?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let counts: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
        let shared = counts.clone();
        // Plain threads, not tasks: the bench blocks its runtime's threads while a CLI process
        // runs, and a relay stalled behind that would time the bench instead of tidemark. The
        // accepting thread lives as long as the process.
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                let (Ok(client_w), Ok(server_r)) = (client.try_clone(), server.try_clone()) else { continue };
                // Without TCP_NODELAY, Nagle's algorithm against delayed ACKs stalls small
                // requests by tens of milliseconds at each hop.
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let counts = shared.clone();
                std::thread::spawn(move || relay_requests(client, server, &counts));
                std::thread::spawn(move || {
                    let (mut from, mut to) = (server_r, client_w);
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(Shutdown::Write);
                });
            }
        });
        Ok(KmsRelay { endpoint, counts })
    }

    fn counts(&self) -> BTreeMap<String, u64> {
        self.counts.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The requests counted since `before` (a value of [`KmsRelay::counts`]).
    fn since(&self, before: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
        self.counts().into_iter().map(|(op, n)| (op.clone(), n - before.get(&op).copied().unwrap_or(0))).filter(|(_, n)| *n > 0).collect()
    }
}

/// Copies requests from the client to the server, counting each line (of at most 256 bytes, so
/// pack bodies cost no memory) that is an `X-Amz-Target: TrentService.*` header.
fn relay_requests(mut from: TcpStream, mut to: TcpStream, counts: &Mutex<BTreeMap<String, u64>>) {
    const TARGET: &[u8] = b"x-amz-target:";
    let mut buf = vec![0u8; 64 * 1024];
    let mut line: Vec<u8> = Vec::with_capacity(256);
    let mut overlong = false;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                if !overlong && line.len() > TARGET.len() && line[..TARGET.len()].eq_ignore_ascii_case(TARGET) {
                    let value = String::from_utf8_lossy(&line[TARGET.len()..]).trim().to_string();
                    if let Some(op) = value.strip_prefix("TrentService.") {
                        if let Ok(mut c) = counts.lock() {
                            *c.entry(op.to_string()).or_default() += 1;
                        }
                    }
                }
                line.clear();
                overlong = false;
            } else if line.len() < 256 {
                line.push(b);
            } else {
                overlong = true;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn total(counts: &BTreeMap<String, u64>) -> u64 {
    counts.values().sum()
}

/// "GenerateDataKey 12, Decrypt 3", or "none".
fn by_operation(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts.iter().map(|(op, n)| format!("{op} {n}")).collect::<Vec<_>>().join(", ")
}

/// Whether SeaweedFS stores an object whose PutObject names a moto KMS key for SSE-KMS, as every
/// write into an encrypted vault does: `Ok(())`, or the error it answered.
async fn probe_sse_kms(weed: &str, moto: &str) -> Result<std::result::Result<(), String>> {
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    let kms = tidemark_aws::AwsClients::load(&tidemark_aws::ClientOptions::local(moto)).await.kms;
    let key = tidemark_aws::kms::create_vault_key(&kms, "tidemark bench SSE-KMS probe").await.context("creating a KMS key on moto")?;
    let c = s3(weed).await;
    c.create_bucket().bucket("bench-sse-probe").send().await.context("creating the probe bucket on SeaweedFS")?;
    let put = c
        .put_object()
        .bucket("bench-sse-probe")
        .key("probe")
        .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
        .ssekms_key_id(&key)
        .body(b"probe".to_vec().into())
        .send()
        .await;
    Ok(put.map(|_| ()).map_err(|e| {
        let status = e.raw_response().map(|r| r.status().as_u16().to_string()).unwrap_or_else(|| "no response".into());
        format!("{status} {}: {}", e.code().unwrap_or("(no code)"), e.message().unwrap_or("(no message)"))
    }))
}

/// Section 1d: protect objects/s of a vault with a KMS key ÷ of one without, interleaved, with the
/// KMS requests counted; then verify of those vaults against s5cmd reads of their packs. Where
/// SeaweedFS refuses SSE-KMS writes, both sides run on moto's S3 (moto stores the SSE-KMS headers).
async fn encryption_runs(cfg: &Config, weed: &str, moto: &str, src: &str, source_dir: &Path, failures: &mut Vec<String>) -> Result<String> {
    eprintln!("bench: probing whether SeaweedFS accepts PutObject with SSE-KMS naming a moto key");
    let probe = probe_sse_kms(weed, moto).await?;
    let relay = KmsRelay::start(moto)?;
    let site = match &probe {
        Ok(()) => Site { control: &relay.endpoint, s3: Some(weed) },
        Err(_) => Site { control: &relay.endpoint, s3: None },
    };
    let place = if site.s3.is_some() { "SeaweedFS" } else { "moto's S3" };
    // The same files as section 1's source, uploaded untimed into this section's S3 server.
    let upload = {
        let to = site.s3_endpoint();
        eprintln!("bench: uploading the source files into {place} with s5cmd");
        s3(to).await.create_bucket().bucket(src).send().await.with_context(|| format!("creating the source bucket on {place}"))?;
        let secs = s5cmd(to, 32, &["cp", "*", &format!("s3://{src}/")], Some(source_dir))?;
        let listed = count_objects(&s3(to).await, src).await?;
        if listed != cfg.objects {
            bail!("the source bucket on {place} holds {listed} objects after the upload, expected {}", cfg.objects);
        }
        format!(" Uploading the source into {place} with s5cmd (32 workers) took {secs:.1} s.")
    };
    let s3c = s3(site.s3_endpoint()).await;

    let (mut plain, mut sealed, mut orders) = (Vec::new(), Vec::new(), Vec::new());
    let (mut kms_plain, mut kms_sealed) = (Vec::new(), Vec::new());
    for i in 1..=cfg.runs {
        let sealed_first = i % 2 == 1;
        orders.push(if sealed_first { "with key, then without" } else { "without key, then with" });
        for encrypted in if sealed_first { [true, false] } else { [false, true] } {
            let (name, label) = if encrypted {
                (format!("bench-sealed-{i}"), format!("encryption run {i}, with key"))
            } else {
                (format!("bench-plain-{i}"), format!("encryption run {i}, without key"))
            };
            eprintln!("bench: {label}: tidemark protect on {place}");
            let run = protect_once(cfg, site, src, &name, &name, encrypted, &label, Some(&relay), failures).await?;
            let kms = run.kms.clone();
            check_pack_encryption(&s3c, &name, src, run.kms_key.as_deref(), &label, failures).await?;
            if encrypted && kms.get("GenerateDataKey").copied().unwrap_or(0) == 0 {
                failures.push(format!("{label}: the relay counted no GenerateDataKey request ({})", by_operation(&kms)));
            }
            if !encrypted && !kms.is_empty() {
                failures.push(format!("{label}: a protect without a key sent KMS requests: {}", by_operation(&kms)));
            }
            if encrypted {
                sealed.push(run);
                kms_sealed.push(kms);
            } else {
                plain.push(run);
                kms_plain.push(kms);
            }
        }
    }
    // Verify the vaults in the order plain 1, sealed 1, sealed 2, plain 2, plain 3, …, each
    // against its own s5cmd read (verify_runs alternates which goes first), so that both kinds of
    // vault, and both orders within a pair, meet the same phases of the machine.
    let vaults: Vec<(String, String)> = (1..=cfg.runs)
        .flat_map(|i| {
            let (p, s) = (format!("bench-plain-{i}"), format!("bench-sealed-{i}"));
            if i % 2 == 1 {
                [p, s]
            } else {
                [s, p]
            }
        })
        .map(|v| (v.clone(), v))
        .collect();
    let pairs = verify_runs(cfg, site, src, &vaults, Some(&relay), failures).await?;
    let (sealed_v, plain_v): (Vec<&VerifyPair>, Vec<&VerifyPair>) = pairs.iter().partition(|p| p.vault.starts_with("bench-sealed-"));
    for p in &plain_v {
        if let Some(kms) = p.kms.as_ref().filter(|k| !k.is_empty()) {
            failures.push(format!("verify of s3://{}, a vault without a key, sent KMS requests: {}", p.vault, by_operation(kms)));
        }
    }

    let n = cfg.objects as f64;
    let rate = |runs: &[ProtectRun]| runs.iter().map(|r| n / r.secs).collect::<Vec<f64>>();
    let (sealed_rates, plain_rates) = (rate(&sealed), rate(&plain));
    let ratios: Vec<f64> = sealed_rates.iter().zip(&plain_rates).map(|(a, b)| a / b).collect();
    let kms_per_1000: Vec<f64> = kms_sealed.iter().map(|k| 1000.0 * total(k) as f64 / n).collect();
    let mut s = String::new();
    let _ = writeln!(s, "\n## 1d. Cost of encryption ({place})\n");
    match &probe {
        Ok(()) => {
            let _ = writeln!(
                s,
                "Both sides run on a SeaweedFS of their own, started with a KMS provider backed by moto's KMS (its S3 configuration file names \
                 the provider, the test credentials and anonymous access), so that the SSE-KMS writes of the vault with a key are stored and \
                 encrypted by SeaweedFS with data keys from moto (a probe in this run wrote one); a plain SeaweedFS answers them with 500 \
                 \"KMS is not configured\". The source is uploaded into it afresh; control plane and KMS on moto as in section 1. The cost \
                 measured is therefore tidemark's sealing plus SeaweedFS's own SSE-KMS of each vault object, as a vault on AWS pays both.\n"
            );
        }
        Err(e) => {
            let _ = writeln!(
                s,
                "SeaweedFS refuses the vault writes of an encrypted vault: every one names the vault key for SSE-KMS, and a probe in this run \
                 (PutObject to SeaweedFS with `x-amz-server-side-encryption: aws:kms` and `x-amz-server-side-encryption-aws-kms-key-id: <a moto key ARN>`) \
                 got `{e}` (SeaweedFS 4.48 logs `handleSSEKMSEncryption: encryption failed: KMS is not configured`: it would encrypt such \
                 objects itself through a KMS provider of its own configuration, which the local stack does not give it). So here both sides, \
                 with and without a key, run with S3 on moto (which stores the SSE-KMS headers and encrypts nothing), control plane and KMS on \
                 moto too: these figures are not comparable with section 1's.\n"
            );
        }
    }
    let _ = writeln!(
        s,
        "The same {} objects protected into a fresh vault per run, one initialised with a KMS key (packs sealed with AES-256-GCM under a data key \
         per pack, every vault write naming the key for SSE-KMS) and one without; {} interleaved runs per side. Everything the CLI sent \
         went through a counting relay in front of moto, on both sides.\n",
        cfg.objects, cfg.runs
    );
    let _ = writeln!(s, "| | with key ÷ without (protect objects/s) | with key objects/s | without key objects/s | KMS requests / 1,000 objects, with key |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|");
    let _ = writeln!(
        s,
        "| **median** | **{:.2}** | {:.0} | {:.0} | {:.1} |",
        median(&ratios),
        median(&sealed_rates),
        median(&plain_rates),
        median(&kms_per_1000)
    );
    let _ = writeln!(s, "\n| run | order | with key s (its own `seconds`) | without key s (its own) | ratio | packs with key (without) | KMS requests with key | without key |");
    let _ = writeln!(s, "|---:|---|---:|---:|---:|---:|---|---|");
    for i in 0..cfg.runs {
        let _ = writeln!(
            s,
            "| {} | {} | {:.2} ({:.2}) | {:.2} ({:.2}) | {:.2} | {} ({}) | {} | {} |",
            i + 1,
            orders[i],
            sealed[i].secs,
            sealed[i].own_secs,
            plain[i].secs,
            plain[i].own_secs,
            ratios[i],
            sealed[i].packs,
            plain[i].packs,
            by_operation(&kms_sealed[i]),
            by_operation(&kms_plain[i])
        );
    }
    let s3_env = if site.s3.is_some() { " and `AWS_ENDPOINT_URL_S3=<seaweedfs>`" } else { "" };
    let _ = writeln!(
        s,
        "\n- Both sides: `tidemark protect --source s3://{src} --vault s3://bench-sealed-N --workers {WORKERS} --wait --no-events --json` (and \
         `s3://bench-plain-N`) with `TIDEMARK_NAME` the vault's name, `TIDEMARK_CONCURRENCY={CONCURRENCY}`, `TIDEMARK_TARGET_OBJECTS={}`, \
         `AWS_ENDPOINT_URL=<relay>`{s3_env}, the whole process as in section 1, after an untimed `tidemark init --local --vault s3://bench-sealed-N` \
         (which creates the vault key on moto) or `tidemark init --local --no-kms-key --vault s3://bench-plain-N`.\n\
         - KMS requests: counted by the relay, a TCP relay on 127.0.0.1 in this process that passes every byte to moto and counts the \
         `X-Amz-Target: TrentService.*` headers of the requests, by operation.\n\
         - Correctness, every run: as in section 1 (protect reported {n} objects and 0 failed, `tidemark ls` as of its point listed {n} keys), \
         `init` reported a key exactly for the vault with one, a pack of the vault with a key names that key for SSE-KMS (HeadObject) and one \
         without names none, the protect with a key sent GenerateDataKey and the one without sent no KMS request.{upload}{moto_note}",
        (cfg.objects / WORKERS).max(1),
        n = cfg.objects,
        moto_note = if site.s3.is_some() {
            ""
        } else {
            "\n- moto serves S3 far slower than SeaweedFS (compare the objects/s with section 1's), and every protect here is bound by it: \
             a cost of encryption smaller than moto's time per object does not show in this ratio."
        }
    );

    let ratio_of = |v: &[&VerifyPair], f: fn(&VerifyPair) -> f64| median(&v.iter().map(|p| f(p)).collect::<Vec<_>>());
    // Both lists run in run order, so the n-th of each are the pair of run n.
    let sealed_over_plain: Vec<f64> = sealed_v.iter().zip(&plain_v).map(|(a, b)| a.verify_mib_s() / b.verify_mib_s()).collect();
    let kms_per_pack: Vec<f64> = sealed_v.iter().map(|p| p.kms.as_ref().map(total).unwrap_or(0) as f64 / p.packs.max(1) as f64).collect();
    let _ = writeln!(s, "\n### Verify, with and without a key ({place})\n");
    let _ = writeln!(s, "| | with key ÷ without (verify MiB/s) | verify ÷ s5cmd read, with key | without key | verify MiB/s with key | without key | KMS requests per pack verified, with key |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        s,
        "| **median** | **{:.2}** | **{:.2}** | **{:.2}** | {:.1} | {:.1} | {:.2} |\n",
        median(&sealed_over_plain),
        ratio_of(&sealed_v, VerifyPair::ratio),
        ratio_of(&plain_v, VerifyPair::ratio),
        ratio_of(&sealed_v, VerifyPair::verify_mib_s),
        ratio_of(&plain_v, VerifyPair::verify_mib_s),
        median(&kms_per_pack)
    );
    s.push_str(&verify_report(&pairs, site, src, "bench-sealed-N", "bench-sealed-N", "The vaults above", false));
    let _ = writeln!(s, "- The same commands ran for `s3://bench-plain-N`, and every tidemark and s5cmd request went through the relay.");
    Ok(s)
}

/// Checks the SSE headers of one pack of `vault`: naming `key` for SSE-KMS where the vault has one,
/// naming no KMS key where it has none.
async fn check_pack_encryption(
    s3c: &aws_sdk_s3::Client,
    vault: &str,
    src: &str,
    key: Option<&str>,
    label: &str,
    failures: &mut Vec<String>,
) -> Result<()> {
    let listed = s3c.list_objects_v2().bucket(vault).prefix(format!("v1/{src}/packs/")).max_keys(1).send().await?;
    let Some(pack) = listed.contents().first().and_then(|o| o.key()) else {
        failures.push(format!("{label}: s3://{vault} holds no pack"));
        return Ok(());
    };
    let h = s3c.head_object().bucket(vault).key(pack).send().await.with_context(|| format!("HeadObject s3://{vault}/{pack}"))?;
    let named = h.ssekms_key_id();
    let ok = match key {
        Some(k) => h.server_side_encryption().map(|e| e.as_str()) == Some("aws:kms") && named == Some(k),
        None => named.is_none(),
    };
    if !ok {
        failures.push(format!(
            "{label}: pack s3://{vault}/{pack} has SSE {:?} with KMS key {named:?}, expected the vault key {key:?}",
            h.server_side_encryption()
        ));
    }
    Ok(())
}

/// Writes `n` incompressible files of OBJECT_BYTES bytes, spread over PREFIXES directories.
fn write_source_files(dir: &Path, n: usize) -> Result<()> {
    for i in 0..n {
        let sub = dir.join(format!("p{:02}", i % PREFIXES));
        if i < PREFIXES {
            std::fs::create_dir_all(&sub)?;
        }
        let mut body = Vec::with_capacity(OBJECT_BYTES);
        let mut block = 0u32;
        while body.len() < OBJECT_BYTES {
            body.extend_from_slice(&Sha256::digest(format!("{i}/{block}").as_bytes()));
            block += 1;
        }
        body.truncate(OBJECT_BYTES);
        std::fs::write(sub.join(format!("obj-{i:06}.bin")), body)?;
    }
    Ok(())
}

/// Where the CLI runs: everything at `control` (moto, or the counting relay in front of it), except
/// S3 at `s3` when that is another server (SeaweedFS).
#[derive(Clone, Copy)]
struct Site<'a> {
    control: &'a str,
    s3: Option<&'a str>,
}

impl Site<'_> {
    /// The S3 endpoint, for s5cmd and the bench's own reads.
    fn s3_endpoint(&self) -> &str {
        self.s3.unwrap_or(self.control)
    }

    /// The environment of a CLI run of deployment `name` with TIDEMARK_CONCURRENCY `concurrency`.
    fn env(&self, name: &str, concurrency: usize) -> Vec<(&'static str, String)> {
        let mut env = vec![("TIDEMARK_NAME", name.to_string()), ("TIDEMARK_CONCURRENCY", concurrency.to_string())];
        if let Some(s3) = self.s3 {
            env.push(("AWS_ENDPOINT_URL_S3", s3.to_string()));
        }
        env
    }
}

/// One protect of the source into a fresh vault, `name` naming its deployment (queues, control
/// table). With `encrypted`, `init --local` creates the vault's KMS key on moto; without it,
/// `--no-kms-key` leaves the packs plaintext.
#[allow(clippy::too_many_arguments)]
async fn protect_once(
    cfg: &Config,
    site: Site<'_>,
    src: &str,
    vault: &str,
    name: &str,
    encrypted: bool,
    label: &str,
    relay: Option<&KmsRelay>,
    failures: &mut Vec<String>,
) -> Result<ProtectRun> {
    let vault = format!("s3://{vault}");
    let source = format!("s3://{src}");
    // A name per run gives each run its own queues and control table, as a fresh deployment has.
    let mut env = site.env(name, CONCURRENCY);
    env.push(("TIDEMARK_TARGET_OBJECTS", (cfg.objects / WORKERS).max(1).to_string()));
    let mut init = vec!["init", "--local", "--vault", &vault, "--json"];
    if !encrypted {
        init.insert(2, "--no-kms-key");
    }
    let i = tidemark_json(site.control, &env, &init).with_context(|| format!("{label}: tidemark {}", init.join(" ")))?;
    let kms_key = i["kms_key"].as_str().map(String::from);
    if i["encrypted"].as_bool() != Some(encrypted) || kms_key.is_some() != encrypted {
        failures
            .push(format!("{label}: init reported encrypted {} and key {}, expected encrypted {encrypted}", i["encrypted"], i["kms_key"]));
    }
    let before = relay.map(KmsRelay::counts).unwrap_or_default();
    let t = Instant::now();
    let p = tidemark_json(
        site.control,
        &env,
        &["protect", "--source", &source, "--vault", &vault, "--workers", &WORKERS.to_string(), "--wait", "--no-events", "--json"],
    )?;
    let secs = t.elapsed().as_secs_f64();
    let kms = relay.map(|r| r.since(&before)).unwrap_or_default();
    let num = |k: &str| p[k].as_u64().unwrap_or(0);
    if p["objects"].as_u64() != Some(cfg.objects as u64) || p["failed"].as_u64() != Some(0) {
        failures
            .push(format!("{label}: protect reported {} objects and {} failed, expected {} and 0", p["objects"], p["failed"], cfg.objects));
    }
    match p["recovery_point"].as_str() {
        None => failures.push(format!("{label}: protect sealed no recovery point: {p}")),
        Some(point) => {
            let ls = tidemark(site.control, &env, &["ls", &source, "--vault", &vault, "--as-of", point, "--json"])?;
            let keys = String::from_utf8_lossy(&ls.stdout).lines().filter(|l| !l.trim().is_empty()).count();
            if !ls.status.success() {
                failures.push(format!("{label}: tidemark ls failed: {}", String::from_utf8_lossy(&ls.stderr).trim()));
            } else if keys != cfg.objects {
                failures.push(format!("{label}: tidemark ls as of {point} listed {keys} keys, expected {}", cfg.objects));
            }
        }
    }
    Ok(ProtectRun {
        secs,
        own_secs: p["seconds"].as_f64().unwrap_or(f64::NAN),
        objects: num("objects"),
        packs: num("packs"),
        tasks: num("tasks"),
        vault_requests: num("vault_requests"),
        source_requests: num("source_requests"),
        recovery_point: p["recovery_point"].as_str().map(String::from),
        kms_key,
        kms,
    })
}

async fn s5cmd_once(
    cfg: &Config,
    s3c: &aws_sdk_s3::Client,
    weed: &str,
    src: &str,
    i: usize,
    workers: usize,
    failures: &mut Vec<String>,
) -> Result<f64> {
    let dst = format!("bench-copy-{i}");
    s3c.create_bucket().bucket(&dst).send().await.with_context(|| format!("creating {dst}"))?;
    let secs = s5cmd(weed, workers, &["cp", &format!("s3://{src}/*"), &format!("s3://{dst}/")], None)?;
    let copied = count_objects(s3c, &dst).await?;
    if copied != cfg.objects {
        failures.push(format!("run {i}: the s5cmd destination s3://{dst} holds {copied} objects, expected {}", cfg.objects));
    }
    Ok(secs)
}

/// Runs s5cmd against SeaweedFS and returns its wall-clock seconds.
fn s5cmd(endpoint: &str, workers: usize, args: &[&str], cwd: Option<&Path>) -> Result<f64> {
    let mut cmd = Command::new(venv_bin("s5cmd")?);
    cmd.arg("--endpoint-url").arg(endpoint).arg("--numworkers").arg(workers.to_string()).args(args);
    // s5cmd has no anonymous mode: SeaweedFS without identities accepts any credentials.
    cmd.env("AWS_ACCESS_KEY_ID", "test").env("AWS_SECRET_ACCESS_KEY", "test").env("AWS_REGION", "us-east-1");
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    // One line per object on stdout would only cost time; errors arrive on stderr.
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let t = Instant::now();
    let out = cmd.output().context("running s5cmd")?;
    let secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!("s5cmd {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(secs)
}

async fn count_objects(s3c: &aws_sdk_s3::Client, bucket: &str) -> Result<usize> {
    let mut n = 0;
    let mut pages = s3c.list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        n += page.with_context(|| format!("listing {bucket}"))?.contents().len();
    }
    Ok(n)
}

/// Stops the servers this process started through the harness, then waits for them to exit.
///
/// The harness runs each server under a watchdog shell and its `Drop` kills that shell with
/// SIGKILL, which leaves the server itself running, re-parented to init. SIGTERM lets the
/// watchdog's trap stop its server, so this sends SIGTERM to the watchdogs (children of this
/// process, found by parent pid) and then to the servers (their children), by pid.
fn stop_watched_servers() {
    let me = std::process::id();
    let procs = processes();
    let watchdogs: Vec<u32> = procs.iter().filter(|(_, ppid, comm)| *ppid == me && comm == "sh").map(|(pid, _, _)| *pid).collect();
    let servers: Vec<u32> = procs.iter().filter(|(_, ppid, _)| watchdogs.contains(ppid)).map(|(pid, _, _)| *pid).collect();
    for pid in watchdogs.iter().chain(&servers) {
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).stderr(Stdio::null()).status();
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && servers.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(200));
    }
    for pid in servers.iter().filter(|p| alive(**p)) {
        eprintln!("bench: server {pid} ignored SIGTERM; killing it");
        let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).stderr(Stdio::null()).status();
    }
}

/// Whether a process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| !matches!(stat_fields(&s), Some((_, 'Z', _)))).unwrap_or(false)
}

/// (pid, parent pid, command name) of every process.
fn processes() -> Vec<(u32, u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| {
            let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (comm, _, ppid) = stat_fields(&stat)?;
            Some((pid, ppid, comm))
        })
        .collect()
}

/// (command name, state, parent pid) from a /proc/PID/stat line; the name may hold spaces and
/// parentheses, so the fields after it are found from the last ')'.
fn stat_fields(stat: &str) -> Option<(String, char, u32)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let mut rest = stat.get(close + 1..)?.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let ppid = rest.next()?.parse().ok()?;
    Some((comm, state, ppid))
}

/// Runs the inventory benchmark binary at 1 million rows and at the configured size.
/// The restore planner at 100,000 and 1,000,000 capture records (synthetic vaults on SeaweedFS):
/// time to plan and the planning process's peak RSS, whose ratio shows whether memory grows with
/// the records.
fn restore_plan_section(cfg: &Config, failures: &mut Vec<String>) -> Result<String> {
    let bin = cfg.exe_dir.join("tidemark-restore-plan-bench");
    if !bin.exists() {
        bail!("{} is missing; build it with `cargo build --release -p tidemark-e2e --bins`", bin.display());
    }
    let weed = start_seaweedfs().context("starting SeaweedFS")?;
    let sizes = [cfg.restore_records / 10, cfg.restore_records];
    let mut results: Vec<Value> = Vec::new();
    for n in sizes {
        eprintln!("bench: restore planner at {n} capture records");
        let out = Command::new(&bin)
            .args([&n.to_string(), "--endpoint", &weed.endpoint])
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("{} {n} failed: {}", bin.display(), text.trim());
        }
        let v: Value = serde_json::from_str(text.trim()).with_context(|| format!("parsing {text}"))?;
        if v["objects"].as_u64() != Some(n) {
            failures.push(format!("restore planner at {n}: planned {} objects", v["objects"]));
        }
        results.push(v);
    }
    stop_watched_servers();
    drop(weed);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mib = |v: &Value, k: &str| f(v, k) / (1024.0 * 1024.0);
    let mut s = String::new();
    let _ = writeln!(s, "## 3. Restore planner\n");
    let _ = writeln!(
        s,
        "A synthetic vault on SeaweedFS per size: seed segments of 10,000 disjoint keys each, plus 20 delta segments of 100 overwrites \
         spread over the whole key space (open for the whole merge), and a recovery point naming them all. A child process of \
         `{} N --endpoint <seaweedfs>` plans a restore of the whole bucket in one step (tasks of 5,000 objects, every segment read to \
         its end and verified); its peak RSS (VmHWM) is the planner's.\n",
        bin.display()
    );
    let _ = writeln!(s, "| capture records | plan s | records/s | peak RSS MiB | RSS before planning MiB | tasks | segments verified |");
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|");
    for v in &results {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.0} | {:.1} | {:.1} | {} | {} |",
            v["records"],
            f(v, "secs"),
            f(v, "records") / f(v, "secs"),
            mib(v, "peak_rss"),
            mib(v, "base_rss"),
            v["tasks"],
            v["segments_verified"]
        );
    }
    if let [small, large] = results.as_slice() {
        let _ = writeln!(
            s,
            "\nPeak RSS at {} ÷ at {} records: **{:.2}** (target ≤ 1.3). Time to plan {} records: **{:.1} s** (target ≤ 10 s).",
            large["records"],
            small["records"],
            f(large, "peak_rss") / f(small, "peak_rss"),
            large["records"],
            f(large, "secs")
        );
    }
    Ok(s)
}

fn inventory_section(cfg: &Config, failures: &mut Vec<String>) -> Result<String> {
    let bin = cfg.exe_dir.join("inventory_bench");
    if !bin.exists() {
        bail!("{} is missing; build it with `cargo build --release -p tidemark-testkit --bins`", bin.display());
    }
    // Generating a 10-million-row report takes minutes, so reports are kept here and reused.
    let dir = std::env::temp_dir().join("tidemark-bench-inventory");
    std::fs::create_dir_all(&dir)?;
    let mut sizes = vec![cfg.inventory_rows.min(1_000_000), cfg.inventory_rows];
    sizes.dedup();
    let mut results: Vec<Value> = Vec::new();
    for &rows in &sizes {
        eprintln!("bench: inventory reader and planner at {rows} rows (report kept in {})", dir.display());
        let out = Command::new(&bin)
            .arg(rows.to_string())
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!("inventory_bench {rows} failed: {}", text.trim());
        }
        let line = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        let v: Value = serde_json::from_str(line).with_context(|| format!("parsing inventory_bench output: {line}"))?;
        if v["rows"].as_u64() != Some(rows) {
            failures.push(format!("inventory_bench {rows}: the reader read {} rows", v["rows"]));
        }
        if v["plan_uncovered_rows"].as_u64() != Some(0) {
            failures.push(format!("inventory_bench {rows}: {} rows fall in no planned partition", v["plan_uncovered_rows"]));
        }
        if v["plan_true_objects"] != v["plan_objects"] {
            failures.push(format!(
                "inventory_bench {rows}: the partitions hold {} rows counted, the plan says {} objects",
                v["plan_true_objects"], v["plan_objects"]
            ));
        }
        results.push(v);
    }

    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    let mib = |v: &Value, k: &str| f(v, k) / (1024.0 * 1024.0);
    let mut s = String::new();
    let _ = writeln!(s, "## 2. S3 Inventory reader and planner\n");
    let _ = writeln!(
        s,
        "Generated CSV.gz reports (shuffled key order, one data file per million rows), read from local files through `file://` manifests by \
         `{} N --dir {}`. The reader and the planner each run in their own child process so that each peak RSS is theirs alone.\n",
        bin.display(),
        dir.display()
    );
    let _ = writeln!(
        s,
        "The planner's balance is largest partition ÷ mean partition. **True** counts the rows that really fall in each planned partition \
         (a second streaming pass over the report after planning, outside the planner's time and peak RSS); **estimated** is what the plan's \
         per-partition counts say (each data file is summarised into bounded samples, so counts are estimates once a file has more keys \
         than its summary keeps; key ranges are exact). Max estimate error is the largest |estimated − true| objects of one partition ÷ the mean.\n"
    );
    let _ = writeln!(
        s,
        "| rows | files | compressed MiB | reader ÷ zcat (rows/s) | reader rows/s | zcat rows/s | reader peak RSS MiB | planner rows/s | partitions | \
         balance, objects: true | estimated | balance, bytes: true | estimated | max estimate error ÷ mean | planner peak RSS MiB |"
    );
    let _ = writeln!(s, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for v in &results {
        let _ = writeln!(
            s,
            "| {} | {} | {:.0} | **{:.2}** | {:.0} | {:.0} | {:.1} | {:.0} | {} | **{:.3}** | {:.3} | {:.3} | {:.3} | {:.3} | {:.1} |",
            v["rows"],
            v["files"],
            mib(v, "compressed_bytes"),
            f(v, "reader_vs_zcat"),
            f(v, "reader_rows_per_sec"),
            f(v, "zcat_rows_per_sec"),
            mib(v, "reader_peak_rss"),
            f(v, "plan_rows_per_sec"),
            v["plan_partitions"],
            f(v, "plan_balance_true"),
            f(v, "plan_balance_estimated"),
            f(v, "plan_bytes_balance_true"),
            f(v, "plan_bytes_balance_estimated"),
            f(v, "plan_max_estimate_error_vs_mean"),
            mib(v, "plan_peak_rss"),
        );
    }
    if let [small, large] = results.as_slice() {
        let _ = writeln!(
            s,
            "\nPeak RSS at {} rows ÷ at {} rows: reader **{:.2}** ({:.1} ÷ {:.1} MiB), planner **{:.2}** ({:.1} ÷ {:.1} MiB; the summary-based \
             planner: each data file sorted on its own into bounded samples, the samples merged) — the planner's memory bound: they must be \
             within a small factor.",
            large["rows"],
            small["rows"],
            f(large, "reader_peak_rss") / f(small, "reader_peak_rss"),
            mib(large, "reader_peak_rss"),
            mib(small, "reader_peak_rss"),
            f(large, "plan_peak_rss") / f(small, "plan_peak_rss"),
            mib(large, "plan_peak_rss"),
            mib(small, "plan_peak_rss"),
        );
    } else {
        let _ = writeln!(s, "\nOnly one size was run, so there is no RSS ratio.");
    }
    if let Some(last) = results.last() {
        let r = f(last, "reader_vs_zcat");
        let _ = writeln!(
            s,
            "\nAt {} rows the reader runs at {:.2} × zcat's speed: the issue's target (at least 0.5) is {}.",
            last["rows"],
            r,
            if r >= 0.5 { "met" } else { "**not met**" }
        );
    }
    if cfg.inventory_rows != 10_000_000 {
        let _ = writeln!(s, "\nRun at {} rows instead of 10,000,000 (`TIDEMARK_BENCH_INVENTORY_ROWS`).", cfg.inventory_rows);
    }
    let generated: Vec<String> =
        results.iter().filter_map(|v| v["generate_secs"].as_f64().map(|g| format!("{} rows in {g:.0} s", v["rows"]))).collect();
    let _ = writeln!(
        s,
        "\nReports generated in this run: {}. zcat ran over the same files after a warm-up pass, so neither side paid for the disk.",
        if generated.is_empty() { "none (reused)".to_string() } else { generated.join(", ") }
    );
    Ok(s)
}
