//! Starting a restore from a request, the one way the API, the restore function's console test
//! event and `tidemark serve` all start one: the request's checks, the default target role, the
//! run (`restore::run::start`), which plans and restores on the restore queue.

use serde::{Deserialize, Serialize};
use tidemark_core::engine::Engine;
use tidemark_core::ports::Targets;
use tidemark_core::restore::run;
use tidemark_core::restore::RestoreRequest;

use crate::error::ApiError;

/// What starting a restore returned: the run's id and where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreStarted {
    pub restore_id: String,
    pub state: String,
    /// True when the request continued its unfinished run instead of starting one.
    pub resumed: bool,
    /// The role the target is written through (named in the request, or the target account's
    /// restore target role), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
}

/// Starts (or continues) the restore `req` asks for and returns at once; the work happens on the
/// restore queue. Refuses, changing nothing, a request whose source the vault does not protect
/// (neither the control table nor a recovery point in the vault says it does).
///
/// A request that names no role and restores into a bucket the vault protects (in place, or into
/// another protected bucket) writes through the restore target role of that bucket's account,
/// when the deployment has one; the run records the role, so every worker uses the same.
pub async fn start_restore(engine: &Engine, targets: &dyn Targets, mut req: RestoreRequest) -> Result<RestoreStarted, ApiError> {
    req.validate()?;
    let control = engine.control();
    // The vault's recovery points are the authority (a vault whose control table is gone still
    // restores); the control table answers first because it costs one read.
    let in_vault = || async {
        let keys = tidemark_core::vault::point::list_points(engine.vault.as_ref(), &engine.config.vault_bucket, &req.source_bucket).await?;
        Ok::<bool, tidemark_core::Error>(!keys.is_empty())
    };
    if !control.is_protected(&req.source_bucket).await? && !in_vault().await? {
        return Err(ApiError::Unprocessable {
            message: format!("s3://{} is not protected by vault {}; nothing to restore", req.source_bucket, engine.config.vault_bucket),
            field: Some("source_bucket".into()),
        });
    }
    if req.target_role_arn.is_none() && control.is_protected(&req.target_bucket).await? {
        req.target_role_arn = targets.default_role(&req.target_bucket);
    }
    let target = targets.store(req.target_role_arn.as_deref()).await.map_err(|e| match e {
        e if e.is_transient() => ApiError::Engine(e),
        e => ApiError::Unprocessable { message: e.to_string(), field: Some("target_role_arn".into()) },
    })?;
    let (r, resumed) = run::start(engine, target.as_ref(), req).await?;
    Ok(RestoreStarted { restore_id: r.restore_id, state: r.state.name().to_string(), resumed, target_role_arn: r.request.target_role_arn })
}
