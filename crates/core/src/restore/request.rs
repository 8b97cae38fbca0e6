//! What a restore is asked to do: the request (CLI, REST API, console test event), its checks, and the report.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::stable_id;
use crate::restore::attributes::AttributeRequest;
use crate::{Error, Result};

/// How a restore writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    /// Into an empty or new target.
    Copy,
    /// In place: rewrite changed keys, optionally delete keys born after T.
    Rollback,
}

impl std::str::FromStr for RestoreMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "copy" => Ok(RestoreMode::Copy),
            "rollback" => Ok(RestoreMode::Rollback),
            other => Err(Error::Invalid(format!("restore mode '{other}' is not one of: copy, rollback"))),
        }
    }
}

/// A restore request, as the CLI, the REST API and console test events give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreRequest {
    pub source_bucket: String,
    #[serde(default)]
    pub prefix: String,
    pub as_of: DateTime<Utc>,
    pub target_bucket: String,
    #[serde(default)]
    pub target_prefix: String,
    #[serde(default = "default_mode")]
    pub mode: RestoreMode,
    /// In rollback mode, delete keys that did not exist at T.
    #[serde(default)]
    pub delete_newer: bool,
    #[serde(default)]
    pub dry_run: bool,
    /// Which optional attributes (storage class, Object Lock, ACL) to write.
    #[serde(default)]
    pub attributes: AttributeRequest,
    /// The role to assume for writing the target (a bucket in another account), as an ARN; without
    /// one the target is written with the restore's own credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_role_arn: Option<String>,
}

impl RestoreRequest {
    /// Everything under `source` as of `as_of`, copied into the new bucket `target` under the same
    /// keys, with no option set: the plainest restore, which callers adjust field by field.
    pub fn copy_all(source: &str, as_of: DateTime<Utc>, target: &str) -> Self {
        RestoreRequest {
            source_bucket: source.into(),
            prefix: String::new(),
            as_of,
            target_bucket: target.into(),
            target_prefix: String::new(),
            mode: RestoreMode::Copy,
            delete_newer: false,
            dry_run: false,
            attributes: Default::default(),
            target_role_arn: None,
        }
    }

    /// Checks what can be checked without the vault: names, the mode's target rules.
    pub fn validate(&self) -> Result<()> {
        crate::domain::check_bucket_name(&self.source_bucket).map_err(|e| Error::Invalid(format!("source bucket: {e}")))?;
        crate::domain::check_bucket_name(&self.target_bucket).map_err(|e| Error::Invalid(format!("target bucket: {e}")))?;
        if self.mode == RestoreMode::Copy && self.target_bucket == self.source_bucket && overlaps(&self.prefix, &self.target_prefix) {
            return Err(Error::Invalid(
                "copy mode needs a target outside the restored prefix; use --mode rollback to restore in place".into(),
            ));
        }
        if self.delete_newer && self.mode != RestoreMode::Rollback {
            return Err(Error::Invalid("delete_newer applies to rollback mode only".into()));
        }
        if let Some(arn) = &self.target_role_arn {
            check_role_arn(arn)?;
        }
        if let Some(class) = &self.attributes.storage_class {
            if !STORAGE_CLASSES.contains(&class.as_str()) {
                return Err(Error::Invalid(format!("storage class '{class}' is not one of: {}", STORAGE_CLASSES.join(", "))));
            }
        }
        Ok(())
    }

    /// A digest of everything that makes two requests the same restore: re-running the same
    /// request continues its unfinished run instead of starting another.
    pub fn digest(&self) -> String {
        stable_id(&[
            &self.source_bucket,
            &self.prefix,
            &self.as_of.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            &self.target_bucket,
            &self.target_prefix,
            &format!("{:?}", self.mode),
            &self.delete_newer.to_string(),
            &self.dry_run.to_string(),
            self.target_role_arn.as_deref().unwrap_or(""),
            &serde_json::to_string(&self.attributes).expect("attributes serialise"),
        ])
    }

    /// The target key of a source key: the target prefix in place of the restored prefix.
    pub fn target_key(&self, source_key: &str) -> String {
        format!("{}{}", self.target_prefix, &source_key[self.prefix.len().min(source_key.len())..])
    }
}

/// The storage classes a restore may write (S3's `x-amz-storage-class` values for PutObject).
pub const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "DEEP_ARCHIVE",
    "OUTPOSTS",
    "GLACIER_IR",
    "SNOW",
    "EXPRESS_ONEZONE",
];

/// True when one prefix contains the other.
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// Checks that `arn` names an IAM role (`arn:<partition>:iam::<12-digit account>:role/<name>`).
pub fn check_role_arn(arn: &str) -> Result<()> {
    let bad = || Error::Invalid(format!("target role '{arn}' is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"));
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [scheme, partition, service, region, account, resource] = parts[..] else { return Err(bad()) };
    let name = resource.strip_prefix("role/").ok_or_else(bad)?;
    let name_ok = !name.is_empty() && name.len() <= 512 && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c));
    if scheme != "arn"
        || partition.is_empty()
        || service != "iam"
        || !region.is_empty()
        || account.len() != 12
        || !account.chars().all(|c| c.is_ascii_digit())
        || !name_ok
    {
        return Err(bad());
    }
    Ok(())
}

fn default_mode() -> RestoreMode {
    RestoreMode::Copy
}

/// What a restore did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub objects: u64,
    pub bytes: u64,
    pub verified: u64,
    pub failed: u64,
    pub deleted: u64,
    pub unchanged: u64,
    pub recovery_point: Option<DateTime<Utc>>,
    pub dry_run: bool,
    /// Keys that failed, with the reason (at most 100 are kept).
    pub failures: Vec<(String, String)>,
    /// Attributes that were not written, as (key, "attribute: reason") (at most 100 are kept).
    #[serde(default)]
    pub not_applied: Vec<(String, String)>,
    /// How many attributes were not written, over all objects.
    #[serde(default)]
    pub attributes_not_applied: u64,
    /// Keys whose state at T the vault does not hold, with the reason: a change of theirs could
    /// not be captured, or they were archived when captured (at most 1,000 are kept).
    #[serde(default)]
    pub unprotected: Vec<(String, String)>,
    /// How many keys are unprotected at T.
    #[serde(default)]
    pub unprotected_count: u64,
}
