//! The commands: each parses its arguments, drives the engine and prints text or the `--json` contract.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use chrono::{Duration, Utc};
use serde_json::json;
use tidemark_aws::admin;
use tidemark_core::changes::checkpoint::{self, BucketCheckpoint, Evidence};
use tidemark_core::changes::compact::{self, CompactOptions};
use tidemark_core::changes::reconcile::{self, ReconcileOptions};
use tidemark_core::control::Counters;
use tidemark_core::control::Lifecycle;
use tidemark_core::engine::Engine;
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::protect::{lifecycle, seed};
use tidemark_core::restore;
use tidemark_core::vault::point;

use tidemark_core::config::settings::Settings;

use crate::args::{Cli, Command, InventoryCommand};
use crate::context::{s3_url, time, Context};
use crate::runner;

/// Runs one command.
pub async fn run(cli: Cli, settings: Settings) -> Result<()> {
    match cli.command {
        Command::Simulate { scenario, seed, json, report } => simulate(&scenario, seed, json, report.as_deref()),
        Command::Inventory { command: InventoryCommand::Plan { manifest, target_objects, all_versions, json } } => {
            let target_objects = target_objects.unwrap_or(settings.target_objects);
            inventory_plan(&cli.global, settings, &manifest, target_objects, all_versions, json).await
        }
        cmd => {
            let mut ctx = Context::load(&cli.global, settings).await;
            ctx.load_kms_key().await?;
            match cmd {
                Command::Init { local, vault, retention_days, no_kms_key, json } => {
                    init(&ctx, local, vault.as_deref(), retention_days, no_kms_key, json).await
                }
                Command::Protect { source, vault, inventory, workers, wait, no_events, all_versions, json } => {
                    let mut ctx = ctx;
                    ctx.settings.all_versions |= all_versions;
                    protect(&ctx, &source, &vault, inventory.as_deref(), workers, wait, no_events, json).await
                }
                Command::Sync { source, vault, reconcile, inventory, json } => {
                    sync(&ctx, &source, &vault, reconcile, inventory.as_deref(), json).await
                }
                Command::Compact { source, vault, small_records, max_records, json } => {
                    compact(&ctx, &source, &vault, small_records, max_records, json).await
                }
                Command::Rebuild { vault, source, json } => rebuild(&ctx, &vault, source.as_deref(), json).await,
                Command::Verify { vault, source, sample, json } => verify(&ctx, &vault, source.as_deref(), sample, json).await,
                Command::Ls { url, vault, as_of, json } => ls(&ctx, &url, &vault, as_of.as_deref(), json).await,
                Command::Restore { action, args } => crate::restore::run(&ctx, action, args).await,
                Command::Unprotect { source, vault, json } => unprotect(&ctx, &source, &vault, json).await,
                Command::Status { run: Some(run), vault: Some(vault), json, .. } => {
                    crate::report::status_run(&ctx, &run, &vault, json).await
                }
                Command::Status { source, vault, json, .. } => status(&ctx, source.as_deref(), vault.as_deref(), json).await,
                Command::Report { run, vault, html } => crate::report::report(&ctx, &run, &vault, &html).await,
                Command::Serve { listen, vault, workers } => crate::serve::serve(&ctx, &listen, &vault, workers).await,
                Command::Simulate { .. } | Command::Inventory { .. } => unreachable!("handled above"),
            }
        }
    }
}

async fn init(ctx: &Context, local: bool, vault: Option<&str>, retention_days: i32, no_kms_key: bool, json: bool) -> Result<()> {
    if !local {
        bail!("init creates resources on the local stack only (pass --local with --endpoint-url); deploy AWS accounts with the Terraform modules or CloudFormation templates");
    }
    if ctx.global.endpoint_url.is_none() {
        bail!("init --local needs --endpoint-url (or AWS_ENDPOINT_URL) pointing at the local stack");
    }
    let c = &ctx.clients;
    let visibility = (ctx.settings.lease_seconds * 2).max(30) as i32;
    let (work, _) = admin::ensure_queue(c, &ctx.names.work_queue, visibility).await?;
    let (delta, _) = admin::ensure_queue(c, &ctx.names.delta_queue, 60).await?;
    let (restore, _) = admin::ensure_queue(c, &ctx.names.restore_queue, visibility).await?;
    admin::ensure_table(c, &ctx.names.table).await?;
    let vault_bucket = match vault {
        Some(v) => {
            let v = s3_url("vault", v)?;
            admin::ensure_vault_bucket(c, &v.bucket, retention_days).await?;
            Some(v.bucket)
        }
        None => None,
    };
    // The vault key: the one configured or stored already, else a new one on the local stack,
    // kept in the control table for every later command; none when asked, and packs stay plaintext.
    let kms_key = match (&ctx.settings.kms_key_arn, no_kms_key) {
        (Some(k), _) => Some(k.clone()),
        (None, true) => None,
        (None, false) => {
            let created = tidemark_aws::kms::create_vault_key(&c.kms, &format!("tidemark {} vault key (local stack)", ctx.settings.name))
                .await
                .context("creating the vault's KMS key on the local stack")?;
            Some(ctx.store_kms_key(&created).await?)
        }
    };
    let encryption = match &kms_key {
        Some(k) => format!("packs encrypted (AES-256-GCM) under data keys of KMS key {k}"),
        None => "packs written unencrypted (no KMS key)".to_string(),
    };
    if json {
        println!(
            "{}",
            json!({"work_queue": work, "delta_queue": delta, "restore_queue": restore, "table": ctx.names.table, "vault": vault_bucket, "retention_days": retention_days, "kms_key": kms_key, "encrypted": kms_key.is_some()})
        );
    } else {
        println!(
            "ready: work queue {work}, delta queue {delta}, restore queue {restore}, table {}, vault {}; {encryption}",
            ctx.names.table,
            vault_bucket.as_deref().unwrap_or("(none)")
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn protect(
    ctx: &Context,
    source: &str,
    vault: &str,
    inventory: Option<&str>,
    workers: usize,
    wait: bool,
    no_events: bool,
    json: bool,
) -> Result<()> {
    let started = Instant::now();
    let src = s3_url("source", source)?;
    let engine = ctx.engine(&s3_url("vault", vault)?).await?;
    seed::check_buckets(&engine, &src.bucket).await?;
    // Events first: every change after this point reaches the delta queue, so nothing falls
    // between the seed listing and continuous capture.
    if !no_events {
        admin::enable_bucket_events(&ctx.clients, &src.bucket).await.context("turning on EventBridge notifications for the source")?;
        admin::route_events(&ctx.clients, &ctx.settings.name, &src.bucket, &engine.queues.delta).await?;
    }
    let targets = PlanTargets { objects: ctx.settings.target_objects, ..Default::default() };
    let plan_source = match inventory {
        Some(url) => seed::PlanSource::Inventory { manifest_url: url.to_string(), targets },
        None => seed::PlanSource::Listing(targets),
    };
    let seeded = seed::seed(&engine, &src.bucket, &src.prefix, plan_source).await?;
    let run_id = seeded.run.run_id.clone();
    if !wait {
        let out = json!({"run_id": run_id, "tasks": seeded.run.task_total(), "enqueued": seeded.enqueued, "resumed": seeded.resumed, "complete": false});
        print_obj(json, &out, || format!("run {run_id}: {} tasks enqueued (resumed: {})", seeded.enqueued, seeded.resumed));
        return Ok(());
    }
    runner::work_until_complete(&engine, &run_id, workers, json).await?;
    let tasks = engine.control().tasks(&run_id).await?;
    let mut c = Counters::default();
    tasks.iter().for_each(|t| c.add(&t.counters));
    // Changes made while seeding are in the delta queue: capture them, then seal the first point.
    let (deltas, sealed) = sync_engine(&engine, &src.bucket, ctx.settings.late_event_seconds).await?;
    let point = sealed_time(&sealed);
    let out = json!({
        "run_id": run_id,
        "objects": c.objects,
        "bytes": c.bytes,
        "packs": c.packs,
        "large_objects": c.large_objects,
        "failed": c.failed,
        "vanished": c.vanished,
        "archived": c.archived,
        "all_versions": seeded.run.all_versions,
        "tasks": seeded.run.task_total(),
        "resumed": seeded.resumed,
        "vault_requests": c.vault_requests,
        "source_requests": c.source_requests,
        "changes_captured": deltas.captured + deltas.deleted,
        "recovery_point": point,
        "seconds": started.elapsed().as_secs_f64(),
    });
    print_obj(json, &out, || {
        format!(
            "run {run_id} complete: {} objects, {} bytes, {} packs, {} large objects, {} vanished, {} failed; recovery point {}",
            c.objects,
            c.bytes,
            c.packs,
            c.large_objects,
            c.vanished,
            c.failed,
            point.map(|p| p.to_rfc3339()).unwrap_or_else(|| "not sealed".into())
        )
    });
    if c.failed > 0 {
        bail!("{} objects failed to copy; `tidemark status --source {source} --vault {vault}` lists them with their reasons", c.failed);
    }
    Ok(())
}

/// Drains deltas and seals a point at the watermark the drain allows, through the engine's one
/// seal path (the checkpoint function's too).
async fn sync_engine(
    engine: &Engine,
    bucket: &str,
    late_seconds: i64,
) -> Result<(tidemark_core::changes::delta::DeltaReport, BucketCheckpoint)> {
    let evidence = Evidence::Drained { started: engine.clock.now() };
    let report = runner::drain_deltas(engine).await?;
    let mut sealed = checkpoint::checkpoint(engine, &[bucket.to_string()], &evidence, Duration::seconds(late_seconds)).await?;
    Ok((report, sealed.pop().expect("one result per bucket")))
}

/// The point a sync or protect reports: none while a seed holds sealing back.
fn sealed_time(c: &BucketCheckpoint) -> Option<chrono::DateTime<Utc>> {
    c.recovery_point.filter(|_| c.seed_in_progress.is_none())
}

async fn sync(ctx: &Context, source: &str, vault: &str, reconcile: bool, inventory: Option<&str>, json: bool) -> Result<()> {
    let src = s3_url("source", source)?;
    let engine = ctx.engine(&s3_url("vault", vault)?).await?;
    // A protected bucket deleted by design is no error: the drain takes its last changes and
    // the checkpoint records it as gone. Any other failure to reach it (access denied) is.
    let source_missing = match seed::check_buckets(&engine, &src.bucket).await {
        Err(tidemark_core::Error::NoSuchBucket { .. }) if engine.control().is_protected(&src.bucket).await? => {
            if !engine.vault.bucket_exists(&engine.config.vault_bucket).await? {
                bail!("vault bucket {} does not exist", engine.config.vault_bucket);
            }
            true
        }
        other => {
            other?;
            false
        }
    };
    if !engine.control().is_protected(&src.bucket).await? {
        bail!("s3://{} is not protected by vault {}; run `tidemark protect` first", src.bucket, engine.config.vault_bucket);
    }
    if let Some(s) = lifecycle::stopped(&engine, &src.bucket).await?.filter(|s| s.state == Lifecycle::Unprotected) {
        bail!("s3://{} was unprotected at {}; `tidemark protect` protects it again", src.bucket, s.since.to_rfc3339());
    }
    let reconcile = reconcile && !source_missing;
    // Reconciliation compares with the catalog, so the queued changes go in first: what the
    // events already carry is then not counted (or captured) as missed.
    let mut before = None;
    let mut rec = None;
    if reconcile {
        before = Some(runner::drain_deltas(&engine).await?);
        let opts = ReconcileOptions { prefix: src.prefix.clone(), inventory_manifest: inventory.map(String::from) };
        let r = reconcile::reconcile(&engine, &src.bucket, &opts).await?;
        // A reconciled delete is stamped with the time it was confirmed, which is now; the point
        // sealed below must reach past it, and points lag the drain by the late-event allowance.
        if r.deletes > 0 {
            tokio::time::sleep(std::time::Duration::from_secs(ctx.settings.late_event_seconds.max(0) as u64 + 1)).await;
        }
        rec = Some(r);
    }
    let (mut r, mut sealed) = sync_engine(&engine, &src.bucket, ctx.settings.late_event_seconds).await?;
    if let Some(b) = before {
        r.absorb(b);
    }
    if let Some(e) = &sealed.error {
        bail!("{e}");
    }
    // A bucket that is back after being gone is protected afresh: its events turned on again
    // (a re-created bucket has no notification configuration), a new seed, then a new point.
    let mut reseeded = None;
    if sealed.returned {
        admin::enable_bucket_events(&ctx.clients, &src.bucket).await.context("turning on EventBridge notifications for the source")?;
        admin::route_events(&ctx.clients, &ctx.settings.name, &src.bucket, &engine.queues.delta).await?;
        let targets = PlanTargets { objects: ctx.settings.target_objects, ..Default::default() };
        let seeded = seed::seed(&engine, &src.bucket, "", seed::PlanSource::Listing(targets)).await?;
        runner::work_until_complete(&engine, &seeded.run.run_id, 4, true).await?;
        let (again, s) = sync_engine(&engine, &src.bucket, ctx.settings.late_event_seconds).await?;
        r.absorb(again);
        sealed = s;
        reseeded = Some(seeded.run.run_id);
    }
    let mut failed_ids: Vec<&String> = r.failed.iter().map(|(id, _)| id).collect();
    failed_ids.sort();
    failed_ids.dedup();
    let seed_in_progress = sealed.seed_in_progress.clone();
    let point = sealed_time(&sealed);
    let out = json!({
        "captured": r.captured,
        "deleted": r.deleted,
        "attribute_changes": r.attributes,
        "duplicates": r.duplicates,
        "ignored": r.ignored,
        "superseded": r.superseded,
        "failed": failed_ids.len(),
        "recovery_point": point,
        "new_recovery_point": sealed.sealed,
        "seed_in_progress": seed_in_progress,
        "gone_since": sealed.gone_since,
        "returned_run_id": reseeded,
    });
    let mut out = out;
    if let Some(rec) = &rec {
        out["reconciled_puts"] = json!(rec.puts);
        out["reconciled_deletes"] = json!(rec.deletes);
        out["reconcile"] = json!(rec);
    }
    print_obj(json, &out, || {
        format!(
            "captured {} puts and {} deletes ({} duplicates, {} ignored, {} failed); recovery point {}",
            r.captured,
            r.deleted,
            r.duplicates,
            r.ignored,
            failed_ids.len(),
            point.map(|p| p.to_rfc3339()).unwrap_or_else(|| "not sealed: a seed run is in progress".into())
        ) + &sealed.gone_since.map(|g| format!("; the bucket is gone since {} (points up to then stay restorable)", g.to_rfc3339())).unwrap_or_default()
            + &reseeded.as_ref().map(|id| format!("; the bucket exists again and was seeded afresh (run {id})")).unwrap_or_default()
            + &rec
            .as_ref()
            .map(|rec| {
                format!(
                    "; reconciled with the {}: {} missed puts and {} missed deletes captured ({} missing, {} changed, {} left to their events)",
                    rec.source, rec.puts, rec.deletes, rec.missing, rec.changed, rec.recent
                )
            })
            .unwrap_or_default()
    });
    Ok(())
}

async fn compact(ctx: &Context, source: &str, vault: &str, small_records: u64, max_records: u64, json: bool) -> Result<()> {
    let src = s3_url("source", source)?;
    let engine = ctx.engine(&s3_url("vault", vault)?).await?;
    seed::check_buckets(&engine, &src.bucket).await?;
    if !engine.control().is_protected(&src.bucket).await? {
        bail!("s3://{} is not protected by vault {}; run `tidemark protect` first", src.bucket, engine.config.vault_bucket);
    }
    let opts = CompactOptions { small_records, max_records, ..Default::default() };
    let r = compact::compact(&engine, &src.bucket, &opts).await?;
    let out = json!({
        "segments_before": r.segments_before,
        "segments_after": r.segments_after,
        "replaced": r.replaced,
        "compacted": r.compacted,
        "records_in": r.records_in,
        "records_out": r.records_out,
        "segments": r.segments,
    });
    print_obj(json, &out, || {
        format!(
            "merged {} small segments into {} ({} records in, {} out); live segments {} -> {}; new recovery points list the merged segments",
            r.replaced, r.compacted, r.records_in, r.records_out, r.segments_before, r.segments_after
        )
    });
    Ok(())
}

async fn ls(ctx: &Context, url: &str, vault: &str, as_of: Option<&str>, json: bool) -> Result<()> {
    let src = s3_url("url", url)?;
    let t = as_of.map(|t| time("as-of", t)).transpose()?;
    let (engine, _) = ctx.reading_engine(&s3_url("vault", vault)?).await?;
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let Some(t) = t else {
        return ls_points(&engine, &src.bucket, json, &mut out).await;
    };
    let (_, state) = restore::load_state(&engine, &src.bucket, &src.prefix, t).await?;
    for (key, r) in state {
        if json {
            let line = json!({"key": key, "size": r.size, "etag": r.etag, "last_modified": r.event_time, "version_id": r.version_id, "content_type": r.content_type});
            writeln!(out, "{line}")?;
        } else {
            writeln!(out, "{}\t{}\t{}\t{}", r.event_time.to_rfc3339(), r.size, r.etag.as_deref().unwrap_or("-"), key)?;
        }
    }
    Ok(())
}

/// `ls` without `--as-of`: the bucket's recovery points, oldest first, read from the vault alone.
async fn ls_points(engine: &Engine, bucket: &str, json: bool, out: &mut impl std::io::Write) -> Result<()> {
    let vault = &engine.config.vault_bucket;
    if !engine.vault.bucket_exists(vault).await? {
        bail!("vault bucket {vault} does not exist (or is not reachable with these credentials)");
    }
    let keys = point::list_points(engine.vault.as_ref(), vault, bucket).await?;
    if keys.is_empty() {
        bail!("vault {vault} holds no recovery point of s3://{bucket}");
    }
    for key in keys {
        let p = point::read_point(engine.vault.as_ref(), vault, &key).await?;
        let records: u64 = p.segments.iter().map(|s| s.count).sum();
        if json {
            let line = json!({"recovery_point": p.time, "sealed_at": p.sealed_at, "segments": p.segments.len(), "records": records, "unprotected": p.unprotected.len()});
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{}\t{} segments\t{} records\t{} unprotected",
                p.time.to_rfc3339(),
                p.segments.len(),
                records,
                p.unprotected.len()
            )?;
        }
    }
    Ok(())
}

/// `tidemark rebuild`: fills the control table from the vault and says what it did per bucket.
async fn rebuild(ctx: &Context, vault: &str, source: Option<&str>, json: bool) -> Result<()> {
    use tidemark_core::rebuild::{self, RebuildOptions};
    let vault = s3_url("vault", vault)?;
    let source = source.map(|s| s3_url("source", s)).transpose()?;
    let engine = ctx.control_engine(&vault).await?;
    let r = rebuild::rebuild(&engine, &RebuildOptions { source: source.map(|s| s.bucket) }).await?;
    for b in &r.buckets {
        let v = serde_json::to_value(b)?;
        print_obj(json, &v, || {
            let mut s = format!(
                "s3://{}: {} points, {} segments ({} registered now, {} already, {} replaced by compaction, {} unreadable), {} packs re-indexed from footers ({} records), {} unprotected keys; {}",
                b.bucket,
                b.points,
                b.segments,
                b.registered,
                b.already_registered,
                b.replaced,
                b.unreadable.len(),
                b.packs_reindexed,
                b.records_reindexed,
                b.failures,
                match b.protected_since {
                    Some(t) => format!("protected since {}", t.to_rfc3339()),
                    None => "left unprotected".into(),
                }
            );
            if let Some(n) = &b.note {
                s.push_str(&format!("\n  {n}"));
            }
            for u in &b.unreadable {
                s.push_str(&format!("\n  unreadable segment {u} (`tidemark verify` says why)"));
            }
            if b.unindexed_copies_total > 0 {
                s.push_str(&format!(
                    "\n  {} large copies are described by no readable segment and cannot be re-indexed, for example {}",
                    b.unindexed_copies_total,
                    b.unindexed_copies.first().map(String::as_str).unwrap_or_default()
                ));
            }
            s
        });
    }
    Ok(())
}

/// `tidemark verify`: reads the vault alone (no control plane), prints the report and fails when
/// anything is damaged or missing.
async fn verify(ctx: &Context, vault: &str, source: Option<&str>, sample: Option<f64>, json: bool) -> Result<()> {
    use tidemark_core::vault::verify::{self, VerifyOptions};
    let started = Instant::now();
    let vault = s3_url("vault", vault)?;
    let source = source.map(|s| s3_url("source", s)).transpose()?;
    let opts = VerifyOptions {
        source: source.map(|s| s.bucket),
        sample: sample.unwrap_or(ctx.settings.verify_sample),
        concurrency: ctx.settings.concurrency,
    };
    opts.validate().context(if sample.is_some() { "--sample" } else { "TIDEMARK_VERIFY_SAMPLE" })?;
    let store = tidemark_aws::S3Store::new(ctx.clients.s3.clone());
    let r = verify::verify(&store, ctx.keys().as_ref(), &vault.bucket, &opts).await?;
    let seconds = started.elapsed().as_secs_f64();
    let mib_s = r.bytes_read as f64 / (1024.0 * 1024.0) / seconds.max(1e-9);
    let mut out = serde_json::to_value(&r)?;
    out["ok"] = json!(r.ok());
    out["damaged"] = json!(r.problems.len());
    out["sample"] = json!(opts.sample);
    out["seconds"] = json!(seconds);
    out["mib_per_s"] = json!(mib_s);
    print_obj(json, &out, || {
        let mut s = format!(
            "vault {}: {} buckets, {} points, {} segments, {} records; read {} of {} packs ({} blobs) and {} of {} large copies, {} bytes in {:.1} s ({:.1} MiB/s); {}",
            vault.bucket,
            r.buckets.len(),
            r.points,
            r.segments,
            r.records,
            r.packs,
            r.packs_total,
            r.blobs,
            r.large_objects,
            r.large_objects_total,
            r.bytes_read,
            seconds,
            mib_s,
            if r.ok() { "nothing damaged or missing".to_string() } else { format!("{} objects damaged or missing:", r.problems.len()) }
        );
        for p in &r.problems {
            let points: Vec<String> = p.recovery_points.iter().map(|t| t.to_rfc3339()).collect();
            s.push_str(&format!(
                "\n  {:?} s3://{}/{} ({}): {}\n    source keys of s3://{} ({}): {}\n    recovery points: {}",
                p.kind,
                vault.bucket,
                p.object,
                p.bucket,
                p.detail,
                p.bucket,
                p.source_keys_total,
                p.source_keys.join(", "),
                if points.is_empty() { "none sealed yet".into() } else { points.join(", ") }
            ));
        }
        s
    });
    if !r.ok() {
        bail!("{} objects of vault {} are damaged or missing (listed above)", r.problems.len(), vault.bucket);
    }
    Ok(())
}

async fn status(ctx: &Context, source: Option<&str>, vault: Option<&str>, json: bool) -> Result<()> {
    let c = &ctx.clients;
    let sqs = tidemark_aws::SqsQueue::new(c.sqs.clone());
    use tidemark_core::ports::Queue;
    let mut queues = serde_json::Map::new();
    for name in [&ctx.names.work_queue, &ctx.names.delta_queue] {
        for q in [name.clone(), format!("{name}-dlq")] {
            let url = admin::queue_url(c, &q).await?;
            queues.insert(q, json!(sqs.depth(&url).await?));
        }
    }
    let mut out = json!({"queues": queues});
    if let (Some(source), Some(vault)) = (source, vault) {
        let src = s3_url("source", source)?;
        let engine = ctx.engine(&s3_url("vault", vault)?).await?;
        let range = point::recoverable_range(engine.vault.as_ref(), &engine.config.vault_bucket, &src.bucket).await?;
        let control = engine.control();
        let active = control.active_run(&src.bucket, &src.prefix).await?;
        let (first, latest) = match &range {
            Some((f, l)) => (Some(f.time), Some(l.time)),
            None => (None, None),
        };
        out["source"] = json!(src.to_string());
        out["first_recovery_point"] = json!(first);
        out["latest_recovery_point"] = json!(latest);
        out["rpo_seconds"] = json!(latest.map(|l| (Utc::now() - l).num_seconds()));
        out["active_run"] = json!(active.map(|(_, r)| r.run_id));
        // Sources gone or unprotected by design: what they are, since when, the last point.
        let states = control.source_states(&src.bucket).await?;
        let own = states.iter().find(|s| s.prefix.is_empty());
        out["state"] = json!(own.map_or(Lifecycle::Protected, |s| s.state));
        out["gone_since"] = json!(own.filter(|s| s.state == Lifecycle::Gone).map(|s| s.since));
        out["unprotected_since"] = json!(own.filter(|s| s.state == Lifecycle::Unprotected).map(|s| s.since));
        out["lifecycle"] = json!(states);
        // What is not protected: the latest point's unprotected keys, the bucket's failures
        // not yet settled, and the objects the latest seed run could not capture.
        out["unprotected"] = json!(range.as_ref().map_or(0, |(_, l)| l.unprotected.len()));
        let failures = control.failures(&src.bucket).await?;
        let failure = |f: &tidemark_core::control::FailureRecord| json!({"key": f.key, "reason": f.reason, "since": f.since, "until": f.until, "origin": f.origin});
        out["failures"] = json!(failures.iter().filter(|(_, f)| f.is_open()).map(|(_, f)| failure(f)).collect::<Vec<_>>());
        if let Some(run) = control.latest_run(&src.bucket, &src.prefix).await? {
            let kept = control.run_failures(&run.run_id).await?;
            out["latest_run"] = json!({
                "run_id": run.run_id,
                "state": run.state,
                "all_versions": run.all_versions,
                "failed": kept.len(),
                "failures": kept.iter().map(|f| json!({"key": f.key, "reason": f.reason})).collect::<Vec<_>>(),
            });
        }
    }
    print_obj(json, &out, || serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

async fn unprotect(ctx: &Context, source: &str, vault: &str, json: bool) -> Result<()> {
    let src = s3_url("source", source)?;
    if !src.prefix.is_empty() {
        bail!("--source {source}: protection ends for a whole bucket; name it without a prefix (s3://{})", src.bucket);
    }
    let engine = ctx.engine(&s3_url("vault", vault)?).await?;
    let s = lifecycle::unprotect(&engine, &src.bucket).await?;
    let latest = s.last_point.map(|t| t.to_rfc3339());
    let out = json!({"source": src.to_string(), "state": s.state, "since": s.since, "last_point": s.last_point});
    print_obj(json, &out, || {
        format!(
            "s3://{} is unprotected since {}; its changes are ignored from now on, and every point up to {} stays restorable",
            src.bucket,
            s.since.to_rfc3339(),
            latest.as_deref().unwrap_or("(none sealed)")
        )
    });
    Ok(())
}

fn simulate(scenario: &std::path::Path, seed: Option<u64>, json: bool, report: Option<&std::path::Path>) -> Result<()> {
    let r = tidemark_sim::run_scenario_file(scenario, seed).with_context(|| format!("--scenario {}", scenario.display()))?;
    if let Some(path) = report {
        std::fs::write(path, tidemark_sim::render_html(&r)).with_context(|| format!("writing --report {}", path.display()))?;
    }
    let v = serde_json::to_value(&r)?;
    print_obj(json, &v, || serde_json::to_string_pretty(&v).unwrap_or_default());
    Ok(())
}

/// Plans a report read through the seeder's opening function (`seed::open_report`): a `file://`
/// manifest from the local directory, an `s3://` one through the S3 client (the only case that
/// loads the AWS configuration).
async fn inventory_plan(
    global: &crate::args::Global,
    settings: Settings,
    manifest: &str,
    target_objects: u64,
    all_versions: bool,
    json: bool,
) -> Result<()> {
    let mut opts = tidemark_core::plan::inventory::PlanOptions {
        targets: PlanTargets { objects: target_objects, ..Default::default() },
        ..Default::default()
    };
    opts.read.all_versions = all_versions;
    // Only an s3:// report needs the AWS configuration and a client; a local copy plans offline.
    let store: Option<Arc<dyn tidemark_core::ports::ObjectStore>> = if manifest.starts_with("s3://") {
        let ctx = Context::load(global, settings).await;
        Some(Arc::new(tidemark_aws::S3Store::new(ctx.clients.s3.clone())))
    } else {
        None
    };
    let url = manifest.to_string();
    let handle = tokio::runtime::Handle::current();
    let plan = tokio::task::spawn_blocking(move || {
        let inventory = seed::open_report(store, &url, handle)?;
        tidemark_core::plan::inventory::plan(&inventory, &opts)
    })
    .await??;
    let v = serde_json::to_value(&plan)?;
    print_obj(json, &v, || {
        let mut s = format!(
            "{} rows, {} objects, {} bytes, skipped {:?}; {} partitions:\n",
            plan.totals.rows,
            plan.totals.objects,
            plan.totals.bytes,
            plan.totals.skipped,
            plan.partitions.len()
        );
        for p in &plan.partitions {
            s.push_str(&format!("  [{:?}, {:?})  {} objects  {} bytes\n", p.start, p.end, p.objects, p.bytes));
        }
        s
    });
    Ok(())
}

fn print_obj(json: bool, v: &serde_json::Value, text: impl FnOnce() -> String) {
    if json {
        println!("{v}");
    } else {
        println!("{}", text());
    }
}
