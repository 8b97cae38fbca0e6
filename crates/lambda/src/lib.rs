//! Lambda handlers of tidemark: thin adapters from Lambda events to the engine's handlers.
//!
//! Each binary in `src/bin` reads [`LambdaConfig`] once, builds the engine once and calls
//! `lambda_runtime::run` with one of these handlers. Tests call the handlers directly with real
//! event payloads.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{Duration, Utc};
use serde::{Deserialize, Serialize};
use tidemark_aws::{
    AwsClients, BucketAccounts, ClientOptions, DynamoControlStore, RoleSourceStore, RoleVaultStore, S3Store, SourceRole, SourceSessions,
    SqsQueue,
};
use tidemark_core::changes::delta::{process_batch, DeltaMessage};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::ports::{Backlog, SystemClock};
use tidemark_core::protect::steps::{handle_step, parse_work_message, WorkMessage};
use tidemark_core::protect::worker::{process_task, TaskOutcome};
use tidemark_core::restore::{RestoreReport, RestoreRequest};
use tidemark_core::vault::point::{self, Sealed};

/// Errors of the Lambda glue.
#[derive(Debug, thiserror::Error)]
pub enum LambdaError {
    /// A required environment variable is missing or malformed: the deployment is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] tidemark_core::Error),
}

impl LambdaError {
    /// True when a retry may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            LambdaError::Config(_) => false,
            LambdaError::Engine(e) => e.is_transient(),
        }
    }
}

/// Configuration every function reads once at start-up from its environment.
#[derive(Debug, Clone)]
pub struct LambdaConfig {
    pub engine: EngineConfig,
    pub control_table: String,
    pub queues: QueueUrls,
    pub late_event_seconds: i64,
    /// The read role assumed in the source accounts; `None` reads the source with the function's
    /// own credentials (the local stack, a single-account deployment without the role).
    pub source_role: Option<SourceRole>,
}

fn var(name: &str) -> Result<String, LambdaError> {
    std::env::var(name).map_err(|_| LambdaError::Config(format!("environment variable {name} is not set")))
}

fn num<T: std::str::FromStr>(name: &str, default: T) -> Result<T, LambdaError> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v.parse().map_err(|_| LambdaError::Config(format!("environment variable {name}='{v}' is not a number"))),
    }
}

impl LambdaConfig {
    /// Reads `TIDEMARK_*` variables; missing required ones are named in the error.
    pub fn from_env() -> Result<Self, LambdaError> {
        let mut engine = EngineConfig::new(var("TIDEMARK_VAULT_BUCKET")?);
        engine.small_object_threshold = num("TIDEMARK_SMALL_OBJECT_THRESHOLD", engine.small_object_threshold)?;
        engine.pack_target_bytes = num("TIDEMARK_PACK_TARGET_BYTES", engine.pack_target_bytes)?;
        engine.multipart_copy_threshold = num("TIDEMARK_MULTIPART_COPY_THRESHOLD", engine.multipart_copy_threshold)?;
        engine.copy_part_bytes = num("TIDEMARK_COPY_PART_BYTES", engine.copy_part_bytes)?;
        engine.concurrency = num("TIDEMARK_CONCURRENCY", engine.concurrency)?;
        engine.lease_seconds = num("TIDEMARK_LEASE_SECONDS", engine.lease_seconds)?;
        engine.step_seconds = num("TIDEMARK_STEP_SECONDS", engine.step_seconds)?;
        if let Ok(ceiling) = var("TIDEMARK_PREFIX_CEILING_RPS") {
            let ceiling: f64 = ceiling.parse().map_err(|_| {
                LambdaError::Config(format!("environment variable TIDEMARK_PREFIX_CEILING_RPS='{ceiling}' is not a number"))
            })?;
            engine.scheduler = Some(EngineConfig::scheduler_for(ceiling, num("TIDEMARK_BACKUP_SHARE", 0.8)?));
        }
        engine.validate()?;
        Ok(LambdaConfig {
            engine,
            control_table: var("TIDEMARK_CONTROL_TABLE")?,
            queues: QueueUrls { work: var("TIDEMARK_WORK_QUEUE_URL")?, delta: var("TIDEMARK_DELTA_QUEUE_URL")? },
            late_event_seconds: num("TIDEMARK_LATE_EVENT_SECONDS", 60)?,
            source_role: source_role_from(|name| std::env::var(name).ok())?,
        })
    }

    /// Builds the engine with AWS clients (the endpoint comes from the standard AWS variables).
    pub async fn engine(&self) -> Engine {
        let clients = AwsClients::load(&ClientOptions::default()).await;
        let (source, vault) = self.stores(&clients);
        Engine {
            source,
            vault,
            control: Arc::new(DynamoControlStore::new(clients.dynamodb.clone(), &self.control_table)),
            queue: Arc::new(SqsQueue::new(clients.sqs.clone()).with_age_metric(clients.cloudwatch.clone())),
            clock: Arc::new(SystemClock),
            config: self.engine.clone(),
            queues: self.queues.clone(),
        }
    }

    /// The source and vault stores over `clients`: with a source role, the source is read (and
    /// large objects are copied into the vault) through the role assumed in the bucket's account;
    /// without one, both use the function's own credentials as before.
    pub fn stores(&self, clients: &AwsClients) -> (Arc<dyn tidemark_core::ports::ObjectStore>, Arc<dyn tidemark_core::ports::ObjectStore>) {
        let s3 = S3Store::new(clients.s3.clone());
        // Under the scheduler, source reads surface `503 SlowDown` to it instead of retrying.
        let source_client = match self.engine.scheduler {
            Some(_) => clients.s3_source.clone(),
            None => clients.s3.clone(),
        };
        match &self.source_role {
            None => (Arc::new(S3Store::new(source_client)), Arc::new(s3)),
            Some(role) => {
                let sessions = Arc::new(SourceSessions::new(clients.shared.clone(), source_client, clients.s3.clone(), role.clone()));
                (Arc::new(RoleSourceStore::new(sessions.clone())), Arc::new(RoleVaultStore::new(s3, &self.engine.vault_bucket, sessions)))
            }
        }
    }
}

/// Reads the source role settings through `get` (the environment in [`LambdaConfig::from_env`]).
///
/// Without `TIDEMARK_SOURCE_ROLE_NAME` (or with it empty) there is no role and the source is read
/// with the function's own credentials. With it, the external id and the source account ids are
/// required, because the role's trust policy demands the one and the role ARN needs the other.
pub fn source_role_from(get: impl Fn(&str) -> Option<String>) -> Result<Option<SourceRole>, LambdaError> {
    let Some(role_name) = get("TIDEMARK_SOURCE_ROLE_NAME").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if !role_name.chars().all(iam_name_char) || role_name.len() > 64 {
        return Err(LambdaError::Config(format!("environment variable TIDEMARK_SOURCE_ROLE_NAME='{role_name}' is not an IAM role name")));
    }
    let external_id = get("TIDEMARK_EXTERNAL_ID").filter(|s| !s.is_empty()).ok_or_else(|| {
        LambdaError::Config("environment variable TIDEMARK_EXTERNAL_ID is not set; the source read role's trust policy requires it".into())
    })?;
    let account_ids = get("TIDEMARK_SOURCE_ACCOUNT_IDS").ok_or_else(|| {
        LambdaError::Config(
            "environment variable TIDEMARK_SOURCE_ACCOUNT_IDS is not set; with TIDEMARK_SOURCE_ROLE_NAME it must name the source accounts (comma-separated)".into(),
        )
    })?;
    let accounts =
        BucketAccounts::parse(&account_ids, &get("TIDEMARK_BUCKET_ACCOUNTS").unwrap_or_default()).map_err(LambdaError::Config)?;
    // The session name shows in the source account's CloudTrail; naming the function tells
    // which of them read. STS allows [\w+=,.@-]{2,64}.
    let session_name = match get("AWS_LAMBDA_FUNCTION_NAME") {
        Some(f) => format!("tidemark-{f}").chars().filter(|c| iam_name_char(*c)).take(64).collect(),
        None => "tidemark".to_string(),
    };
    Ok(Some(SourceRole { role_name, external_id, session_name, accounts }))
}

/// A character IAM allows in role and session names (`[\w+=,.@-]`).
fn iam_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+=,.@_-".contains(c)
}

/// Sets up JSON logs (honouring `AWS_LAMBDA_LOG_LEVEL` / `RUST_LOG`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().json().with_env_filter(filter).with_current_span(false).without_time().init();
}

fn failure(id: &str) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id.to_string();
    f
}

fn response(failures: Vec<BatchItemFailure>) -> SqsBatchResponse {
    let mut r = SqsBatchResponse::default();
    r.batch_item_failures = failures;
    r
}

/// Worker: one message per task or seed step; a task that did not finish, or a step that
/// failed, is reported as a batch item failure.
pub async fn worker_handler(engine: &Engine, event: SqsEvent, owner: &str) -> SqsBatchResponse {
    let mut failures = Vec::new();
    for m in event.records {
        let id = m.message_id.clone().unwrap_or_default();
        let body = m.body.unwrap_or_default();
        let outcome = match parse_work_message(&body) {
            Ok(WorkMessage::Step(step)) => match handle_step(engine, &step).await {
                Ok(outcome) => {
                    tracing::info!(message_id = %id, run_id = %step.run_id, step = ?step.step, file = ?step.file, ?outcome, "seed step");
                    continue;
                }
                Err(e) => Err(e),
            },
            Ok(WorkMessage::Task(task)) => match process_task(engine, &task, owner).await {
                // A deferred task goes back as a fresh delayed message (see `requeue_deferred`),
                // so the received one succeeds; if the send fails, SQS redelivers this one.
                Ok(TaskOutcome::Deferred(delay)) => {
                    tidemark_core::protect::worker::requeue_deferred(engine, &task, delay).await.map(|_| TaskOutcome::Deferred(delay))
                }
                other => other,
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(TaskOutcome::Finished(_)) | Ok(TaskOutcome::AlreadyDone) | Ok(TaskOutcome::Deferred(_)) => {}
            Ok(TaskOutcome::Busy) => failures.push(failure(&id)),
            Err(e) => {
                tracing::error!(message_id = %id, error = %e, transient = e.is_transient(), "task failed");
                failures.push(failure(&id));
            }
        }
    }
    response(failures)
}

/// Delta: captures a batch of S3 change events; malformed or foreign ones are reported so SQS
/// retries and then dead-letters them without blocking the others.
pub async fn delta_handler(engine: &Engine, event: SqsEvent) -> SqsBatchResponse {
    let msgs: Vec<DeltaMessage> = event
        .records
        .iter()
        .map(|m| DeltaMessage { id: m.message_id.clone().unwrap_or_default(), body: m.body.clone().unwrap_or_default() })
        .collect();
    match process_batch(engine, &msgs).await {
        Ok(report) => {
            tracing::info!(
                captured = report.captured,
                deleted = report.deleted,
                duplicates = report.duplicates,
                failed = report.failed.len(),
                "delta batch"
            );
            response(report.failed.iter().map(|(id, _)| failure(id)).collect())
        }
        Err(e) => {
            tracing::error!(error = %e, "delta batch failed; every message will be retried");
            response(msgs.iter().map(|m| failure(&m.id)).collect())
        }
    }
}

/// The seeder's request (a console test event or the protect API).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedRequest {
    pub source_bucket: String,
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub target_objects: Option<u64>,
    /// Seed from this S3 Inventory manifest instead of listing.
    #[serde(default)]
    pub inventory_manifest: Option<String>,
}

/// What the seeder did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedResponse {
    pub run_id: String,
    pub tasks: usize,
    pub enqueued: usize,
    pub resumed: bool,
    /// `planning` while a stepwise seed is summarising its report (`tasks` is 0 until planned),
    /// then `running` and `complete`.
    pub state: String,
}

/// Seeder: plans a run by listing and enqueues its tasks, or, with an inventory manifest,
/// starts the stepwise seed (`protect::steps`): one summarise message per data file, handled by
/// the worker function, so that no invocation's time grows with the report.
pub async fn seeder_handler(engine: &Engine, req: SeedRequest) -> Result<SeedResponse, LambdaError> {
    let targets = PlanTargets { objects: req.target_objects.unwrap_or(100_000), ..Default::default() };
    let s = match req.inventory_manifest {
        Some(url) => tidemark_core::protect::steps::start(engine, &req.source_bucket, &req.prefix, &url, targets).await?,
        None => {
            let source = tidemark_core::protect::seed::PlanSource::Listing(targets);
            tidemark_core::protect::seed::seed(engine, &req.source_bucket, &req.prefix, source).await?
        }
    };
    let state = serde_json::to_value(s.run.state).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    Ok(SeedResponse { run_id: s.run.run_id.clone(), tasks: s.run.task_total() as usize, enqueued: s.enqueued, resumed: s.resumed, state })
}

/// The daily reconciliation request the deployed schedule sends to the seeder function
/// (`{"mode":"reconcile","buckets":[...]}`, see `infra/events/reconcile.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconcileRequest {
    /// Always `reconcile`; the field is what tells this request from a [`SeedRequest`].
    pub mode: String,
    pub buckets: Vec<String>,
    #[serde(default)]
    pub prefix: String,
    /// Compare a bucket with this S3 Inventory manifest (by bucket name) instead of listing it.
    #[serde(default)]
    pub inventory_manifests: std::collections::BTreeMap<String, String>,
}

/// What reconciliation found in one bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconcileResult {
    pub bucket: String,
    pub reconciled_puts: u64,
    pub reconciled_deletes: u64,
    pub missing: u64,
    pub changed: u64,
    pub source: String,
}

/// Reconcile: compares each bucket with the catalog and captures what the events missed.
///
/// The reconciled records land in delta segments that the next checkpoint seals into a point.
/// One bucket failing does not stop the others; the error is returned after all were tried, so
/// the schedule's retry policy and dead-letter queue see it.
pub async fn reconcile_handler(engine: &Engine, req: ReconcileRequest) -> Result<Vec<ReconcileResult>, LambdaError> {
    let mut out = Vec::new();
    let mut first_error = None;
    for bucket in &req.buckets {
        let opts = tidemark_core::changes::reconcile::ReconcileOptions {
            prefix: req.prefix.clone(),
            inventory_manifest: req.inventory_manifests.get(bucket).cloned(),
        };
        match tidemark_core::changes::reconcile::reconcile(engine, bucket, &opts).await {
            Ok(r) => out.push(ReconcileResult {
                bucket: bucket.clone(),
                reconciled_puts: r.puts,
                reconciled_deletes: r.deletes,
                missing: r.missing,
                changed: r.changed,
                source: r.source,
            }),
            Err(e) => {
                tracing::error!(%bucket, error = %e, "reconciliation failed");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(out),
    }
}

/// The seeder function's entry: a reconciliation request (`"mode": "reconcile"`) or a seed request.
pub async fn seeder_dispatch(engine: &Engine, event: serde_json::Value) -> Result<serde_json::Value, LambdaError> {
    let bad = |e: serde_json::Error| LambdaError::Engine(tidemark_core::Error::Invalid(format!("seeder request: {e}")));
    match event.get("mode").and_then(|m| m.as_str()) {
        Some("reconcile") => {
            let req: ReconcileRequest = serde_json::from_value(event).map_err(bad)?;
            let res = reconcile_handler(engine, req).await?;
            Ok(serde_json::json!({ "reconciled": res }))
        }
        Some(other) => Err(LambdaError::Engine(tidemark_core::Error::Invalid(format!(
            "seeder request has mode '{other}'; the only mode is 'reconcile' (omit it to seed)"
        )))),
        None => {
            let req: SeedRequest = serde_json::from_value(event).map_err(bad)?;
            let res = seeder_handler(engine, req).await?;
            Ok(serde_json::to_value(res).expect("seed response serialises"))
        }
    }
}

/// The checkpoint's request: which buckets to seal (the schedule's constant input).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointRequest {
    pub buckets: Vec<String>,
}

/// What the checkpoint did for one bucket.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointResult {
    pub bucket: String,
    pub recovery_point: Option<chrono::DateTime<Utc>>,
    pub sealed: bool,
    pub rpo_seconds: Option<i64>,
    pub note: Option<String>,
}

/// Checkpoint: seals a point at the watermark the delta queue's backlog allows.
///
/// The watermark is the late-event allowance behind the oldest change not yet handled (read from
/// SQS's `ApproximateAgeOfOldestMessage` while changes keep arriving) or behind now when the queue
/// is empty. When the queue cannot tell, nothing is sealed and the RPO grows, which the RPO alarm
/// sees. The RPO is printed in CloudWatch Embedded Metric Format.
pub async fn checkpoint_handler(
    engine: &Engine,
    req: CheckpointRequest,
    late_event_seconds: i64,
) -> Result<Vec<CheckpointResult>, LambdaError> {
    let now = engine.clock.now();
    let backlog = engine.queue.oldest_unhandled(&engine.queues.delta).await?;
    let watermark = point::watermark_from_backlog(&backlog, Duration::seconds(late_event_seconds)).map(|w| w.min(now));
    let mut out = Vec::new();
    for bucket in req.buckets {
        let mut res = CheckpointResult { bucket: bucket.clone(), recovery_point: None, sealed: false, rpo_seconds: None, note: None };
        match watermark {
            Some(w) => {
                match point::seal(&engine.vault, engine.control.as_ref(), &engine.config.vault_bucket, &bucket, &[String::new()], w, now)
                    .await?
                {
                    Sealed::New(p) => {
                        res.recovery_point = Some(p.time);
                        res.sealed = true;
                    }
                    Sealed::UpToDate(t) => res.recovery_point = Some(t),
                    Sealed::SeedInProgress(run) => res.note = Some(format!("seed run {run} in progress")),
                }
                if let Backlog::Oldest { oldest_sent, .. } = &backlog {
                    res.note.get_or_insert_with(|| format!("oldest unhandled change sent at {}", oldest_sent.to_rfc3339()));
                }
            }
            None => res.note = Some(format!("not sealing: {}", backlog_reason(&backlog))),
        }
        if res.recovery_point.is_none() {
            if let Some((_, latest)) = point::recoverable_range(engine.vault.as_ref(), &engine.config.vault_bucket, &bucket).await? {
                res.recovery_point = Some(latest.time);
            }
        }
        res.rpo_seconds = res.recovery_point.map(|p| (now - p).num_seconds());
        if let Some(rpo) = res.rpo_seconds {
            println!(
                "{}",
                serde_json::json!({"_aws": {"Timestamp": now.timestamp_millis(), "CloudWatchMetrics": [{"Namespace": "Tidemark", "Dimensions": [["Bucket"]], "Metrics": [{"Name": "RpoSeconds", "Unit": "Seconds"}]}]}, "Bucket": bucket, "RpoSeconds": rpo})
            );
        }
        out.push(res);
    }
    Ok(out)
}

fn backlog_reason(b: &Backlog) -> String {
    match b {
        Backlog::Unknown { reason } => reason.clone(),
        other => format!("{other:?}"),
    }
}

/// Restore: runs a restore request (REST API, console test event) with the function's S3 client.
pub async fn restore_handler(engine: &Engine, req: RestoreRequest) -> Result<RestoreReport, LambdaError> {
    let target = engine.vault.clone();
    Ok(tidemark_core::restore::restore(engine, target, &req, &|done, total| tracing::info!(done, total, "restore progress")).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidemark_core::ports::{ObjectStore, PutOptions};
    use tidemark_testkit::fakes::{MemControlStore, MemObjectStore, MemQueue};

    fn engine(store: Arc<MemObjectStore>) -> Engine {
        Engine {
            source: store.clone(),
            vault: store,
            control: Arc::new(MemControlStore::new()),
            queue: Arc::new(MemQueue::new()),
            clock: Arc::new(SystemClock),
            config: EngineConfig::new("vault"),
            queues: QueueUrls::default(),
        }
    }

    /// The deployed schedule's input (`infra/events/reconcile.json`'s shape) reaches reconciliation
    /// through the seeder's entry point; other modes and malformed requests are clear errors.
    #[tokio::test]
    async fn the_seeder_dispatches_the_scheduled_reconcile_request() {
        let store = Arc::new(MemObjectStore::new());
        store.create("acme-prod-data", false);
        store.create("vault", true);
        let e = engine(store.clone());
        e.control().set_protected("acme-prod-data", Utc::now()).await.unwrap();
        store.put("acme-prod-data", "missed.txt", bytes_of("x"), &PutOptions::default()).await.unwrap();
        let event: serde_json::Value =
            serde_json::from_str(include_str!("../../../infra/events/reconcile.json")).expect("the console event parses");
        let out = seeder_dispatch(&e, event).await.unwrap();
        assert_eq!(out["reconciled"][0]["bucket"], "acme-prod-data", "{out}");
        assert_eq!(out["reconciled"][0]["reconciled_puts"], 1, "{out}");
        assert_eq!(out["reconciled"][0]["reconciled_deletes"], 0, "{out}");
        assert_eq!(e.control().segments("acme-prod-data").await.unwrap().len(), 1, "one reconcile segment is registered");

        let bad = seeder_dispatch(&e, serde_json::json!({"mode": "sideways", "buckets": []})).await.unwrap_err();
        assert!(bad.to_string().contains("the only mode is 'reconcile'"), "{bad}");
        let unknown = seeder_dispatch(&e, serde_json::json!({"mode": "reconcile", "buckets": ["not-protected"]})).await.unwrap_err();
        assert!(unknown.to_string().contains("not protected"), "{unknown}");
        let malformed = seeder_dispatch(&e, serde_json::json!({"prefix": "x/"})).await.unwrap_err();
        assert!(malformed.to_string().contains("source_bucket"), "{malformed}");
    }

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: std::collections::HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.get(name).cloned()
    }

    const ROLE: (&str, &str) = ("TIDEMARK_SOURCE_ROLE_NAME", "tidemark-backup-read");
    const EXT: (&str, &str) = ("TIDEMARK_EXTERNAL_ID", "0123456789abcdef0123");

    #[test]
    fn without_a_role_name_the_function_reads_with_its_own_credentials() {
        assert_eq!(source_role_from(lookup(&[])).unwrap(), None);
        assert_eq!(source_role_from(lookup(&[("TIDEMARK_SOURCE_ROLE_NAME", ""), EXT])).unwrap(), None);
    }

    #[test]
    fn one_source_account_owns_every_bucket() {
        let r = source_role_from(lookup(&[
            ROLE,
            EXT,
            ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333"),
            ("AWS_LAMBDA_FUNCTION_NAME", "tm-worker"),
        ]))
        .unwrap()
        .expect("a role");
        assert_eq!(r.role_name, "tidemark-backup-read");
        assert_eq!(r.external_id, "0123456789abcdef0123");
        assert_eq!(r.session_name, "tidemark-tm-worker");
        assert_eq!(r.accounts.account_of("acme-prod-data").unwrap(), "111122223333");
    }

    #[test]
    fn several_source_accounts_use_the_bucket_map() {
        let r = source_role_from(lookup(&[
            ROLE,
            EXT,
            ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333,444455556666"),
            ("TIDEMARK_BUCKET_ACCOUNTS", "acme-prod-data=111122223333,acme-logs=444455556666"),
        ]))
        .unwrap()
        .expect("a role");
        assert_eq!(r.accounts.account_of("acme-prod-data").unwrap(), "111122223333");
        assert_eq!(r.accounts.account_of("acme-logs").unwrap(), "444455556666");
        let missing = r.accounts.account_of("acme-other").unwrap_err();
        assert!(!missing.is_transient(), "a bucket with no account is permanent");
        let msg = missing.to_string();
        assert!(msg.contains("acme-other") && msg.contains("TIDEMARK_BUCKET_ACCOUNTS") && msg.contains("bucket_accounts"), "{msg}");
    }

    #[test]
    fn malformed_source_settings_are_configuration_errors() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[ROLE, EXT, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "11112222333")], "'11112222333' is not a 12-digit"),
            (&[ROLE, EXT, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "11112222333a")], "is not a 12-digit"),
            (&[ROLE, EXT], "TIDEMARK_SOURCE_ACCOUNT_IDS is not set"),
            (&[ROLE, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333")], "TIDEMARK_EXTERNAL_ID is not set"),
            (&[ROLE, EXT, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333"), ("TIDEMARK_BUCKET_ACCOUNTS", "acme=1")], "'1' of bucket 'acme'"),
            (&[ROLE, EXT, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333"), ("TIDEMARK_BUCKET_ACCOUNTS", "acme")], "bucket=account"),
            (
                &[ROLE, EXT, ("TIDEMARK_SOURCE_ACCOUNT_IDS", "111122223333"), ("TIDEMARK_BUCKET_ACCOUNTS", "acme=444455556666")],
                "not one of TIDEMARK_SOURCE_ACCOUNT_IDS",
            ),
            (&[("TIDEMARK_SOURCE_ROLE_NAME", "no spaces allowed"), EXT], "not an IAM role name"),
        ];
        for (vars, expected) in cases {
            let e = source_role_from(lookup(vars)).unwrap_err();
            assert!(matches!(e, LambdaError::Config(_)) && !e.is_transient(), "{e}");
            assert!(e.to_string().contains(expected), "{vars:?}: '{e}' should contain '{expected}'");
        }
    }

    fn bytes_of(s: &str) -> bytes::Bytes {
        bytes::Bytes::from(s.to_string())
    }
}
