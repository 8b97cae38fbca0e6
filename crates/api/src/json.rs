//! The JSON of a restore run, one shape for the CLI's `--json` and the API's responses: scripts
//! that read `tidemark restore status --json` can read `GET /v1/restores/{id}` unchanged.

use serde_json::{json, Value};
use tidemark_core::restore::run::{RestoreRun, RestoreStatus};

/// The JSON of a run's status: the keys scripts rely on (`objects`, `bytes`, `verified`,
/// `failed`) plus `restore_id`, `state` and the rest.
pub fn status_json(s: &RestoreStatus) -> Value {
    let c = &s.counters;
    json!({
        "restore_id": s.run.restore_id,
        "state": s.run.state.name(),
        "objects": c.objects,
        "bytes": c.bytes,
        "verified": c.verified,
        "failed": c.failed,
        "deleted": c.deleted,
        "unchanged": c.unchanged,
        "dry_run": s.run.request.dry_run,
        "recovery_point": s.run.recovery_point,
        "as_of": s.run.request.as_of,
        "source": format!("s3://{}/{}", s.run.request.source_bucket, s.run.request.prefix),
        "target": format!("s3://{}/{}", s.run.request.target_bucket, s.run.request.target_prefix),
        "target_role_arn": s.run.request.target_role_arn,
        "mode": s.run.request.mode,
        "planned_objects": s.run.plan.objects,
        "tasks": s.tasks,
        "tasks_done": s.tasks_done,
        "requests": {"vault": c.vault_requests, "target": c.target_requests},
        "error": s.run.error,
        "started_at": s.run.started_at,
        "finished_at": s.run.finished_at,
        "failures": s.failures.iter().map(|f| json!({"key": f.key, "error": f.reason})).collect::<Vec<_>>(),
        "failures_total": s.failures_total,
        "samples": s.samples,
        "attributes_not_applied": c.attributes_not_applied,
        "not_applied": s.not_applied.iter().map(not_applied_json).collect::<Vec<_>>(),
        "unprotected": s.run.unprotected_count + c.unprotected,
        "unprotected_keys": s.unprotected.iter().map(|u| json!({"key": u.key, "reason": u.reason})).collect::<Vec<_>>(),
    })
}

/// One attribute a restore did not write: its note reads "attribute: reason".
fn not_applied_json(n: &tidemark_core::restore::run::Failure) -> Value {
    let (attribute, reason) = n.reason.split_once(": ").unwrap_or((n.reason.as_str(), ""));
    json!({"key": n.key, "attribute": attribute, "reason": reason})
}

/// One run in a list of runs (`tidemark restore list --json` prints one per line).
pub fn run_json(r: &RestoreRun) -> Value {
    json!({
        "restore_id": r.restore_id,
        "state": r.state.name(),
        "as_of": r.request.as_of,
        "source": format!("s3://{}/{}", r.request.source_bucket, r.request.prefix),
        "prefix": r.request.prefix,
        "target": format!("s3://{}/{}", r.request.target_bucket, r.request.target_prefix),
        "mode": r.request.mode,
        "dry_run": r.request.dry_run,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
    })
}
