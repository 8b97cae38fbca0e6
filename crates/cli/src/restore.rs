//! `tidemark restore`: start (or continue) a restore run, wait for it here with a progress bar,
//! and show, resume or list runs.

use std::io::IsTerminal;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use serde_json::json;
use tidemark_api::{run_json, status_json};
use tidemark_core::engine::Engine;
use tidemark_core::protocol::local::drive_restore;
use tidemark_core::restore::attributes::AttributeRequest;
use tidemark_core::restore::run::{self, RestoreState, RestoreStatus};
use tidemark_core::restore::{RestoreMode, RestoreRequest};

use crate::args::{RestoreAction, RestoreArgs};
use crate::context::{s3_url, time, Context};

/// Runs `tidemark restore …`.
pub async fn run(ctx: &Context, action: Option<RestoreAction>, args: RestoreArgs) -> Result<()> {
    if action.is_some() {
        need_control_plane(ctx).await?;
    }
    match action {
        None => start(ctx, args).await,
        Some(RestoreAction::Status { id, vault, json }) => {
            let engine = ctx.engine(&s3_url("vault", &vault)?).await?;
            let s = run::status(&engine, &id).await?;
            print(json, &s, None)?;
            Ok(())
        }
        Some(RestoreAction::Resume { id, vault, wait, workers, json }) => {
            let engine = ctx.engine(&s3_url("vault", &vault)?).await?;
            need_restore_queue(ctx, &engine)?;
            run::resume(&engine, &id).await?;
            finish(ctx, &engine, &id, wait, workers, json, Instant::now()).await
        }
        Some(RestoreAction::List { source, vault, json }) => {
            let src = s3_url("source", &source)?;
            let engine = ctx.engine(&s3_url("vault", &vault)?).await?;
            for r in run::list(&engine, &src.bucket).await? {
                if json {
                    println!("{}", run_json(&r));
                } else {
                    println!(
                        "{}  {:<9}  as of {}  s3://{}/{} -> s3://{}/{}",
                        r.restore_id,
                        r.state.name(),
                        r.request.as_of.to_rfc3339(),
                        r.request.source_bucket,
                        r.request.prefix,
                        r.request.target_bucket,
                        r.request.target_prefix
                    );
                }
            }
            Ok(())
        }
    }
}

/// Runs live in the control table: without it, `status`, `resume` and `list` have nothing to
/// read (a restore from the vault alone kept its run in its own process and printed its result).
async fn need_control_plane(ctx: &Context) -> Result<()> {
    let missing = tidemark_aws::admin::missing_control_plane(&ctx.clients, &ctx.names).await?;
    if !missing.is_empty() {
        bail!(
            "{} not found: restore runs are kept in the control plane (a restore from the vault alone runs in its own process and prints its result there; `tidemark rebuild` recreates the control table)",
            missing.join(", ")
        );
    }
    Ok(())
}

fn need_restore_queue(ctx: &Context, engine: &Engine) -> Result<()> {
    if engine.queues.restore.is_empty() {
        bail!("queue {} does not exist; run `tidemark init --local` to create it", ctx.names.restore_queue);
    }
    Ok(())
}

async fn start(ctx: &Context, a: RestoreArgs) -> Result<()> {
    let started = Instant::now();
    let required = |v: Option<String>, flag: &str| v.with_context(|| format!("--{flag} is required"));
    let src = s3_url("source", &required(a.source, "source")?)?;
    let dst = s3_url("to", &required(a.to, "to")?)?;
    let t = time("as-of", &required(a.as_of, "as-of")?)?;
    let mode: RestoreMode = a.mode.parse().context("--mode")?;
    let (engine, vault_only) = ctx.reading_engine(&s3_url("vault", &required(a.vault, "vault")?)?).await?;
    if !vault_only {
        need_restore_queue(ctx, &engine)?;
    }
    let req = RestoreRequest {
        source_bucket: src.bucket.clone(),
        prefix: src.prefix.clone(),
        as_of: t,
        target_bucket: dst.bucket.clone(),
        target_prefix: dst.prefix.clone(),
        mode,
        delete_newer: a.delete_newer,
        dry_run: a.dry_run,
        attributes: AttributeRequest { storage_class: a.storage_class.clone(), object_lock: a.object_lock, acl: a.acl },
        target_role_arn: a.target_role.clone(),
    };
    let targets = ctx.targets(&engine);
    let r = tidemark_api::start_restore(&engine, targets.as_ref(), req).await?;
    if r.resumed && !a.json {
        eprintln!("restore {}: continuing the unfinished run of this request", r.restore_id);
    }
    // Without a control plane no deployed worker can see this run's queue, and its state lives in
    // this process: it is restored here, as with --wait.
    if vault_only && !a.wait && !a.json {
        eprintln!("restore {}: running here until it ends (nothing else can see its state)", r.restore_id);
    }
    finish(ctx, &engine, &r.restore_id, a.wait || vault_only, a.workers, a.json, started).await
}

/// Without `wait`, prints the run as it stands; with it, drives the restore queue here until the
/// run ends, showing progress, then prints the result and fails when any object failed.
async fn finish(ctx: &Context, engine: &Engine, id: &str, wait: bool, workers: usize, json: bool, started: Instant) -> Result<()> {
    if !wait {
        let s = run::status(engine, id).await?;
        print(json, &s, Some(started))?;
        return Ok(());
    }
    let targets = ctx.targets(engine);
    let owner = format!("local-{}", std::process::id());
    let mut progress = Progress::new(json);
    let s = drive_restore(engine, targets, id, workers, &owner, |s| progress.show(s)).await?;
    progress.done();
    print(json, &s, Some(started))?;
    if s.run.state == RestoreState::Failed {
        bail!("restore {id} failed: {}", s.run.error.clone().unwrap_or_else(|| "see `tidemark restore status`".into()));
    }
    Ok(())
}

/// Progress of a waited-for restore on stderr: a bar on a terminal, a line every few seconds
/// otherwise, nothing with `--json`.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last: Instant,
    started: Instant,
}

impl Progress {
    fn new(json: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!json && terminal).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} objects, {per_sec}, ETA {eta}")
                    .expect("a valid progress template")
                    .progress_chars("=> "),
            );
            bar
        });
        Progress { bar, plain: !json && !terminal, last: Instant::now(), started: Instant::now() }
    }

    fn show(&mut self, s: &RestoreStatus) {
        let done = s.counters.objects + s.counters.unchanged + s.counters.failed;
        let total = s.run.plan.objects;
        if let Some(bar) = &self.bar {
            bar.set_length(total.max(done));
            bar.set_position(done);
            bar.set_message(format!("{} {} MiB", s.run.state.name(), s.counters.bytes / (1024 * 1024)));
        } else if self.plain && self.last.elapsed().as_secs() >= 2 {
            self.last = Instant::now();
            let rate = done as f64 / self.started.elapsed().as_secs_f64().max(0.001);
            eprintln!(
                "restore {}: {}, {done}/{total} objects, {} bytes, {:.0} objects/s, {} failed",
                s.run.restore_id,
                s.run.state.name(),
                s.counters.bytes,
                rate,
                s.counters.failed
            );
        }
    }

    fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn print(json: bool, s: &RestoreStatus, started: Option<Instant>) -> Result<()> {
    let mut v = status_json(s);
    if let Some(t) = started {
        v["seconds"] = json!(t.elapsed().as_secs_f64());
    }
    if json {
        println!("{v}");
        return Ok(());
    }
    let c = &s.counters;
    let r = &s.run;
    let target = format!("s3://{}/{}", r.request.target_bucket, r.request.target_prefix);
    match r.state {
        RestoreState::Planning | RestoreState::Restoring => println!(
            "restore {}: {} ({} of {} tasks done, {} objects restored so far into {target})",
            r.restore_id,
            r.state.name(),
            s.tasks_done,
            s.tasks,
            c.objects
        ),
        _ if r.request.dry_run => {
            println!(
                "restore {} (dry run): would write {} objects ({} bytes), keep {} unchanged, delete {}; nothing was written",
                r.restore_id, c.objects, c.bytes, c.unchanged, c.deleted
            );
            for (action, keys) in &s.samples {
                println!("  {action}: {}", keys.join(", "));
            }
        }
        _ => println!(
            "restore {}: {} — restored {} objects ({} bytes) into {target}, {} verified, {} failed, {} deleted, {} unchanged",
            r.restore_id,
            r.state.name(),
            c.objects,
            c.bytes,
            c.verified,
            c.failed,
            c.deleted,
            c.unchanged
        ),
    }
    for f in s.failures.iter().take(20) {
        println!("  failed: {}: {}", f.key, f.reason);
    }
    if let Some(n) = s.not_applied.first() {
        println!("  {} attributes not written, for example {}: {}", c.attributes_not_applied, n.key, n.reason);
    }
    let unprotected = r.unprotected_count + c.unprotected;
    if unprotected > 0 {
        println!("  {unprotected} keys were not protected at {}:", r.request.as_of.to_rfc3339());
        for u in s.unprotected.iter().take(20) {
            println!("    {}: {}", u.key, u.reason);
        }
    }
    if let Some(e) = &r.error {
        println!("  error: {e}");
    }
    Ok(())
}
