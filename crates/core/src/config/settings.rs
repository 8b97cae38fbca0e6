//! The configuration table: every `TIDEMARK_*` variable, with its type, default and meaning, in one place.
//!
//! The Lambda functions and the `tidemark` CLI both read their settings through
//! [`Settings::from_lookup`] (given the process environment) once at start-up; the CLI's flags only
//! override what it read. [`Settings::table`] lists the variables, which the README documents and a
//! test checks. The engine itself never reads the environment: it takes the [`EngineConfig`] that
//! [`Settings::engine_config`] builds.

use crate::config::EngineConfig;
use crate::{Error, Result};

/// Which programs read a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The Lambda functions and the CLI.
    All,
    /// The Lambda functions only (the CLI derives or is told these otherwise).
    Lambda,
    /// The CLI only.
    Cli,
}

/// One row of the configuration table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The environment variable.
    pub var: &'static str,
    /// Its type, as Rust spells it.
    pub ty: &'static str,
    /// Its default, shown as the variable would be written; `None` when it has none.
    pub default: Option<String>,
    /// What it sets, in one line.
    pub doc: &'static str,
    pub scope: Scope,
}

/// A type a setting can have: parsed from the variable's text, shown as a default.
trait Value: Sized {
    fn parse(var: &str, raw: &str) -> Result<Self>;
    fn show(&self) -> Option<String>;
}

fn bad(var: &str, raw: &str, what: &str) -> Error {
    Error::Invalid(format!("environment variable {var}='{raw}' is not {what}"))
}

macro_rules! number_value {
    ($($t:ty => $what:literal),*) => {$(
        impl Value for $t {
            fn parse(var: &str, raw: &str) -> Result<Self> {
                raw.trim().parse().map_err(|_| bad(var, raw, $what))
            }
            fn show(&self) -> Option<String> {
                Some(self.to_string())
            }
        }
    )*};
}
number_value!(u64 => "a whole number", usize => "a whole number", i64 => "a whole number", f64 => "a number");

impl Value for String {
    fn parse(_: &str, raw: &str) -> Result<Self> {
        Ok(raw.trim().to_string())
    }
    fn show(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl Value for bool {
    fn parse(var: &str, raw: &str) -> Result<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(bad(var, raw, "true or false")),
        }
    }
    fn show(&self) -> Option<String> {
        Some(self.to_string())
    }
}

impl<T: Value> Value for Option<T> {
    fn parse(var: &str, raw: &str) -> Result<Self> {
        T::parse(var, raw).map(Some)
    }
    fn show(&self) -> Option<String> {
        self.as_ref().and_then(T::show)
    }
}

/// Reads one variable: unset or blank gives the default.
fn read<T: Value>(get: &impl Fn(&str) -> Option<String>, var: &str, default: T) -> Result<T> {
    match get(var) {
        Some(raw) if !raw.trim().is_empty() => T::parse(var, &raw),
        _ => Ok(default),
    }
}

/// Declares the table once: the struct's fields, the rows of [`Settings::table`], the reader and the defaults.
macro_rules! settings {
    ($( #[doc = $doc:literal] $field:ident : $ty:ty = $var:literal, $scope:ident, $default:expr; )*) => {
        /// Every `TIDEMARK_*` setting, typed, as read once at start-up (see the module documentation).
        #[derive(Debug, Clone, PartialEq)]
        pub struct Settings {
            $( #[doc = $doc] pub $field: $ty, )*
        }

        impl Default for Settings {
            fn default() -> Self {
                Settings { $( $field: $default, )* }
            }
        }

        impl Settings {
            /// The configuration table, in the order of the struct.
            pub fn table() -> Vec<Setting> {
                vec![$( Setting {
                    var: $var,
                    ty: stringify!($ty),
                    default: Value::show(&{ let d: $ty = $default; d }),
                    doc: $doc.trim(),
                    scope: Scope::$scope,
                } ),*]
            }

            /// Reads every setting through `get` (the process environment in the binaries);
            /// unset or blank variables take their defaults, and a malformed one is an error that
            /// names it.
            pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
                Ok(Settings { $( $field: read(&get, $var, $default)?, )* })
            }
        }
    };
}

settings! {
    /// Prefix of the queue and table names the CLI uses, so several vaults can share an endpoint.
    name: String = "TIDEMARK_NAME", Cli, "tidemark".to_string();
    /// Log filter of the CLI (`tracing` env-filter syntax); Lambda uses AWS_LAMBDA_LOG_LEVEL.
    log: String = "TIDEMARK_LOG", Cli, "warn".to_string();
    /// The vault bucket every capture goes to (the CLI takes --vault).
    vault_bucket: Option<String> = "TIDEMARK_VAULT_BUCKET", Lambda, None;
    /// The DynamoDB control table (the CLI derives it from TIDEMARK_NAME).
    control_table: Option<String> = "TIDEMARK_CONTROL_TABLE", Lambda, None;
    /// URL of the work queue: seed tasks and seed steps (the CLI derives it from TIDEMARK_NAME).
    work_queue_url: Option<String> = "TIDEMARK_WORK_QUEUE_URL", Lambda, None;
    /// URL of the delta queue: S3 change events (the CLI derives it from TIDEMARK_NAME).
    delta_queue_url: Option<String> = "TIDEMARK_DELTA_QUEUE_URL", Lambda, None;
    /// URL of the restore queue: restore steps and tasks (the CLI derives it from TIDEMARK_NAME).
    restore_queue_url: Option<String> = "TIDEMARK_RESTORE_QUEUE_URL", Lambda, None;
    /// Objects smaller than this many bytes are packed; larger ones are copied server-side.
    small_object_threshold: u64 = "TIDEMARK_SMALL_OBJECT_THRESHOLD", All, 1024 * 1024;
    /// A pack is closed once it holds this many bytes.
    pack_target_bytes: u64 = "TIDEMARK_PACK_TARGET_BYTES", All, 64 * 1024 * 1024;
    /// Part size in bytes for streaming packs with multipart upload (at least 5 MiB).
    pack_part_bytes: u64 = "TIDEMARK_PACK_PART_BYTES", All, 8 * 1024 * 1024;
    /// Objects of at least this many bytes are copied with UploadPartCopy in parallel parts.
    multipart_copy_threshold: u64 = "TIDEMARK_MULTIPART_COPY_THRESHOLD", All, 5 * 1024 * 1024 * 1024;
    /// Part size in bytes of multipart server-side copies (at least 5 MiB).
    copy_part_bytes: u64 = "TIDEMARK_COPY_PART_BYTES", All, 512 * 1024 * 1024;
    /// Requests each worker keeps in flight.
    concurrency: usize = "TIDEMARK_CONCURRENCY", All, 16;
    /// The most objects one batch (one pack, one index segment) covers.
    batch_objects: usize = "TIDEMARK_BATCH_OBJECTS", All, 10_000;
    /// Objects per partition when a seed run is planned.
    target_objects: u64 = "TIDEMARK_TARGET_OBJECTS", All, 100_000;
    /// The most objects one restore task covers.
    restore_task_objects: u64 = "TIDEMARK_RESTORE_TASK_OBJECTS", All, 5_000;
    /// The most packed bytes one restore task covers (large objects are copied server-side).
    restore_task_bytes: u64 = "TIDEMARK_RESTORE_TASK_BYTES", All, 1024 * 1024 * 1024;
    /// Seconds a task lease lasts without a checkpoint.
    lease_seconds: i64 = "TIDEMARK_LEASE_SECONDS", All, 60;
    /// Seconds a seed plan step works before it hands the rest to a fresh message.
    step_seconds: u64 = "TIDEMARK_STEP_SECONDS", All, 600;
    /// Whether blobs are zstd-compressed when that makes them smaller.
    compress: bool = "TIDEMARK_COMPRESS", All, true;
    /// Seconds a recovery point stays behind the oldest unhandled change, for events still in flight.
    late_event_seconds: i64 = "TIDEMARK_LATE_EVENT_SECONDS", All, 60;
    /// Requests per second per top-level prefix (application and backup together); turns on the scheduler.
    prefix_ceiling_rps: Option<f64> = "TIDEMARK_PREFIX_CEILING_RPS", All, None;
    /// The share of the per-prefix ceiling the backup may use, in (0, 1].
    backup_share: f64 = "TIDEMARK_BACKUP_SHARE", All, 0.8;
    /// Seed every version and delete marker of versioned buckets (ListObjectVersions), not only the current versions.
    all_versions: bool = "TIDEMARK_ALL_VERSIONS", All, false;
    /// Capture object ACLs where the source bucket has ACLs enabled (one GetObjectAcl per object).
    capture_acls: bool = "TIDEMARK_CAPTURE_ACLS", All, true;
    /// Archived objects (Glacier, Deep Archive, Intelligent-Tiering archive tiers): `skip` records them as archived; `restore` also sends RestoreObject.
    archived: String = "TIDEMARK_ARCHIVED", All, "skip".to_string();
    /// Days a restored copy of an archived object lasts when TIDEMARK_ARCHIVED is `restore`.
    archive_restore_days: u64 = "TIDEMARK_ARCHIVE_RESTORE_DAYS", All, 7;
    /// Name of the read role assumed in each source account; unset reads with the function's own credentials.
    source_role_name: Option<String> = "TIDEMARK_SOURCE_ROLE_NAME", Lambda, None;
    /// External id the source read role's trust policy requires.
    external_id: Option<String> = "TIDEMARK_EXTERNAL_ID", Lambda, None;
    /// Comma-separated ids of the source accounts (one account: every bucket is in it).
    source_account_ids: Option<String> = "TIDEMARK_SOURCE_ACCOUNT_IDS", Lambda, None;
    /// `bucket=account,…`: which source account owns each bucket, when there are several.
    bucket_accounts: Option<String> = "TIDEMARK_BUCKET_ACCOUNTS", Lambda, None;
    /// Name of the restore target role in each source account; restores into a protected bucket that name no role assume it.
    target_role_name: Option<String> = "TIDEMARK_TARGET_ROLE_NAME", Lambda, None;
    /// The share of packs and large copies `tidemark verify` and the scrub read, chosen by key hash, in (0, 1].
    verify_sample: f64 = "TIDEMARK_VERIFY_SAMPLE", All, 1.0;
    /// Seconds one scrub invocation verifies before it leaves the rest of the vault to the next.
    verify_step_seconds: u64 = "TIDEMARK_VERIFY_STEP_SECONDS", Lambda, 600;
    /// The vault's KMS key (ARN, id or alias): packs are encrypted with AES-256-GCM under data keys it wraps, and vault writes name it for SSE-KMS; unset writes plaintext packs (the CLI then uses the key `init --local` stored in the control table, if any).
    kms_key_arn: Option<String> = "TIDEMARK_KMS_KEY_ARN", All, None;
    /// ARN of the SNS topic the alert function publishes one alert per dead-lettered message to.
    alert_topic_arn: Option<String> = "TIDEMARK_ALERT_TOPIC_ARN", Lambda, None;
    /// Comma-separated URLs of the dead-letter queues the alert function sweeps (it reads them and leaves every message there).
    dead_letter_queue_urls: Option<String> = "TIDEMARK_DEAD_LETTER_QUEUE_URLS", Lambda, None;
    /// CloudWatch namespace of the metrics the functions print as EMF (the dashboard and alarms query it).
    metrics_namespace: String = "TIDEMARK_METRICS_NAMESPACE", Lambda, "Tidemark".to_string();
}

impl Settings {
    /// The engine configuration for a vault bucket, validated against S3's limits.
    pub fn engine_config(&self, vault_bucket: &str) -> Result<EngineConfig> {
        let mut config = self.engine_config_unchecked(vault_bucket);
        config.archived = crate::config::ArchivedPolicy::parse(&self.archived, self.archive_restore_days)
            .map_err(|e| Error::Invalid(format!("TIDEMARK_ARCHIVED / TIDEMARK_ARCHIVE_RESTORE_DAYS: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// The engine configuration without validation (the defaults are valid by construction).
    pub(crate) fn engine_config_unchecked(&self, vault_bucket: &str) -> EngineConfig {
        EngineConfig {
            vault_bucket: vault_bucket.into(),
            small_object_threshold: self.small_object_threshold,
            pack_target_bytes: self.pack_target_bytes,
            pack_part_bytes: self.pack_part_bytes,
            multipart_copy_threshold: self.multipart_copy_threshold,
            copy_part_bytes: self.copy_part_bytes,
            concurrency: self.concurrency,
            batch_objects: self.batch_objects,
            target_objects: self.target_objects,
            restore_task_objects: self.restore_task_objects,
            restore_task_bytes: self.restore_task_bytes,
            lease_seconds: self.lease_seconds,
            compress: self.compress,
            scheduler: self.prefix_ceiling_rps.map(|ceiling| EngineConfig::scheduler_for(ceiling, self.backup_share)),
            step_seconds: self.step_seconds,
            all_versions: self.all_versions,
            capture_acls: self.capture_acls,
            archived: crate::config::ArchivedPolicy::parse(&self.archived, self.archive_restore_days).unwrap_or_default(),
            kms_key_id: self.kms_key_arn.clone(),
        }
    }

    /// A required setting: its value, or an error naming the variable.
    pub fn require<'a>(value: &'a Option<String>, var: &str) -> Result<&'a str> {
        value.as_deref().ok_or_else(|| Error::Invalid(format!("environment variable {var} is not set")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn unset_and_blank_variables_take_the_defaults_of_the_table() {
        let s = Settings::from_lookup(lookup(&[("TIDEMARK_CONCURRENCY", "  ")])).unwrap();
        assert_eq!(s, Settings::default());
        let row = |var: &str| Settings::table().into_iter().find(|r| r.var == var).unwrap();
        assert_eq!(row("TIDEMARK_SMALL_OBJECT_THRESHOLD").default.as_deref(), Some("1048576"));
        assert_eq!(row("TIDEMARK_LATE_EVENT_SECONDS").default.as_deref(), Some("60"));
        assert_eq!(row("TIDEMARK_PREFIX_CEILING_RPS").default, None);
        assert_eq!(row("TIDEMARK_PREFIX_CEILING_RPS").ty, "Option<f64>");
    }

    #[test]
    fn variables_override_defaults_and_bad_ones_are_named() {
        let s = Settings::from_lookup(lookup(&[
            ("TIDEMARK_CONCURRENCY", "4"),
            ("TIDEMARK_PREFIX_CEILING_RPS", "500"),
            ("TIDEMARK_COMPRESS", "off"),
        ]))
        .unwrap();
        assert_eq!((s.concurrency, s.prefix_ceiling_rps, s.compress), (4, Some(500.0), false));
        let c = s.engine_config("v").unwrap();
        assert_eq!(c.scheduler.as_ref().map(|s| s.ceiling_rps), Some(500.0));
        for (var, raw, says) in [
            ("TIDEMARK_CONCURRENCY", "many", "is not a whole number"),
            ("TIDEMARK_BACKUP_SHARE", "most", "is not a number"),
            ("TIDEMARK_COMPRESS", "maybe", "is not true or false"),
        ] {
            let e = Settings::from_lookup(lookup(&[(var, raw)])).unwrap_err().to_string();
            assert!(e.contains(var) && e.contains(raw) && e.contains(says), "{e}");
        }
        let arn = "arn:aws:kms:us-east-1:111122223333:key/k";
        let c = Settings::from_lookup(lookup(&[("TIDEMARK_KMS_KEY_ARN", arn)])).unwrap().engine_config("v").unwrap();
        let sse = c.vault_sse().unwrap();
        assert_eq!((c.kms_key_id.as_deref(), sse.algorithm.as_str(), sse.kms_key_id.as_deref()), (Some(arn), "aws:kms", Some(arn)));
        assert!(Settings::default().engine_config("v").unwrap().vault_sse().is_none(), "no key, no SSE named");
        let e = Settings::from_lookup(lookup(&[("TIDEMARK_COPY_PART_BYTES", "1024")])).unwrap().engine_config("v").unwrap_err();
        assert!(e.to_string().contains("5 MiB"), "{e}");
    }

    #[test]
    fn every_variable_is_named_once_and_documented_in_one_line() {
        let table = Settings::table();
        let mut vars: Vec<&str> = table.iter().map(|r| r.var).collect();
        vars.sort();
        vars.dedup();
        assert_eq!(vars.len(), table.len(), "a variable appears twice");
        for r in &table {
            assert!(r.var.starts_with("TIDEMARK_"), "{}", r.var);
            assert!(!r.doc.is_empty() && !r.doc.contains('\n'), "{}: {:?}", r.var, r.doc);
        }
    }
}
