//! The scrub function's handler: on a schedule, verifies the vault a time-budgeted step at a time
//! (`vault::verify`), continuing where the previous invocation stopped, and reports damage as the
//! `VerifyDamaged` metric (CloudWatch EMF, namespace `Tidemark`, dimension `Vault`).
//!
//! The cursor lives in the control table (`scrub#<vault>` / `cursor`, replaced by compare-and-set):
//! each invocation checks the objects after it, so a vault too large for one invocation is
//! verified over several, and a finished pass starts the next one from the beginning. Two
//! overlapping invocations at worst check some objects twice.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tidemark_core::engine::Engine;
use tidemark_core::vault::verify::{self, Problem, VerifyCursor, VerifyOptions};

use crate::LambdaError;

/// The schedule's input: optionally one source bucket only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScrubRequest {
    #[serde(default)]
    pub source: Option<String>,
}

/// What one invocation checked and found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScrubResult {
    pub vault: String,
    pub packs: u64,
    pub blobs: u64,
    pub large_objects: u64,
    pub segments: u64,
    pub bytes_read: u64,
    /// Damaged or missing objects found by this invocation.
    pub damaged: u64,
    pub problems: Vec<Problem>,
    /// Where the next invocation continues; `None` when this one finished a pass.
    pub next: Option<VerifyCursor>,
}

fn cursor_pk(vault: &str) -> String {
    format!("scrub#{vault}")
}

/// Verifies the next stretch of the vault within `budget`, reading a `sample` share of its packs
/// and large copies, and records where the next invocation continues.
pub async fn scrub_handler(engine: &Engine, req: ScrubRequest, sample: f64, budget: Duration) -> Result<ScrubResult, LambdaError> {
    let vault = engine.config.vault_bucket.clone();
    let pk = cursor_pk(&vault);
    let stored = engine.control.get(&pk, "cursor").await?;
    let cursor: Option<VerifyCursor> = match &stored {
        Some(item) => serde_json::from_str(&item.body).map_err(|e| tidemark_core::Error::corrupt("scrub cursor", e.to_string()))?,
        None => None,
    };
    // A cursor of another bucket than the one asked for does not apply to this request.
    let cursor = cursor.filter(|c| req.source.as_ref().is_none_or(|s| s == &c.bucket));
    let opts = VerifyOptions { source: req.source.clone(), sample, concurrency: engine.config.concurrency };
    let (report, next) =
        verify::verify_step(engine.vault.as_ref(), engine.keys.as_ref(), &vault, &opts, cursor, Some(Instant::now() + budget)).await?;
    let body = serde_json::to_string(&next).expect("a cursor serialises");
    // A lost race means an overlapping invocation moved the cursor; its position stands.
    match stored {
        None => {
            engine.control.put_new(&pk, "cursor", &body, None).await?;
        }
        Some(item) => {
            engine.control.replace(&pk, "cursor", item.version, &body).await?;
        }
    }
    for p in &report.problems {
        tracing::error!(vault = %vault, bucket = %p.bucket, object = %p.object, kind = ?p.kind, detail = %p.detail, source_keys = ?p.source_keys, recovery_points = ?p.recovery_points, "vault object damaged or missing");
    }
    Ok(ScrubResult {
        vault,
        packs: report.packs,
        blobs: report.blobs,
        large_objects: report.large_objects,
        segments: report.segments,
        bytes_read: report.bytes_read,
        damaged: report.problems.len() as u64,
        problems: report.problems,
        next,
    })
}

/// The EMF line of one scrub invocation: `VerifyDamaged` (objects found damaged or missing, zero
/// included so that the alarm sees the scrub run) and `VerifyBytes`, under the dimension `Vault`.
pub fn verify_damaged_emf(result: &ScrubResult, at: DateTime<Utc>) -> Value {
    let metrics = [("VerifyDamaged", "Count", json!(result.damaged)), ("VerifyBytes", "Bytes", json!(result.bytes_read))];
    crate::metrics::emf_line(&[("Vault", result.vault.as_str())], &metrics, at.timestamp_millis())
}
