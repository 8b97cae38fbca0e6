//! Command-line arguments: the contract scripts depend on (README.md), plus typed engine settings read from flags or environment.

use clap::{Args, Parser, Subcommand};
use tidemark_core::config::settings::Settings;

/// tidemark: protect S3 buckets into an immutable vault and restore any prefix as of any time.
#[derive(Parser, Debug)]
#[command(name = "tidemark", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Endpoint for every AWS service (the local stack, for instance).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// Endpoint for S3 only (for instance SeaweedFS beside moto).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL_S3")]
    pub s3_endpoint_url: Option<String>,
    #[arg(long, global = true)]
    pub region: Option<String>,
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// Prefix of the queue and table names, so several vaults can share one account or endpoint
    /// [TIDEMARK_NAME; default tidemark].
    #[arg(long, global = true)]
    pub name: Option<String>,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Engine settings: each flag overrides the `TIDEMARK_*` variable of the configuration table
/// named in brackets (`tidemark_core::config::settings`), whose default applies when neither is set.
#[derive(Args, Debug, Clone, Default)]
pub struct EngineArgs {
    /// Objects below this size (bytes) are packed; larger ones are copied server-side [TIDEMARK_SMALL_OBJECT_THRESHOLD].
    #[arg(long, global = true)]
    pub small_object_threshold: Option<u64>,
    /// Pack size (bytes) at which a pack is closed [TIDEMARK_PACK_TARGET_BYTES].
    #[arg(long, global = true)]
    pub pack_target_bytes: Option<u64>,
    /// Objects at or above this size (bytes) are copied with UploadPartCopy in parallel parts [TIDEMARK_MULTIPART_COPY_THRESHOLD].
    #[arg(long, global = true)]
    pub multipart_copy_threshold: Option<u64>,
    /// Part size (bytes) of multipart server-side copies [TIDEMARK_COPY_PART_BYTES].
    #[arg(long, global = true)]
    pub copy_part_bytes: Option<u64>,
    /// Requests each worker keeps in flight [TIDEMARK_CONCURRENCY].
    #[arg(long, global = true)]
    pub concurrency: Option<usize>,
    /// Objects per partition when planning a seed run [TIDEMARK_TARGET_OBJECTS].
    #[arg(long, global = true)]
    pub target_objects: Option<u64>,
    /// Objects per batch (one pack, one index segment) [TIDEMARK_BATCH_OBJECTS].
    #[arg(long, global = true)]
    pub batch_objects: Option<usize>,
    /// Seconds a task lease lasts without a checkpoint [TIDEMARK_LEASE_SECONDS].
    #[arg(long, global = true)]
    pub lease_seconds: Option<i64>,
    /// Seconds a recovery point stays behind the drain, for events still in flight [TIDEMARK_LATE_EVENT_SECONDS].
    #[arg(long, global = true)]
    pub late_event_seconds: Option<i64>,
    /// Seconds a seed plan step works before it continues in a fresh message [TIDEMARK_STEP_SECONDS].
    #[arg(long, global = true)]
    pub step_seconds: Option<u64>,
    /// Operator ceiling in requests per second per top-level prefix (application and backup
    /// together); setting it turns on the per-prefix scheduler [TIDEMARK_PREFIX_CEILING_RPS].
    #[arg(long, global = true)]
    pub prefix_ceiling_rps: Option<f64>,
    /// The share of the per-prefix ceiling the backup may use, in (0, 1] [TIDEMARK_BACKUP_SHARE].
    #[arg(long, global = true)]
    pub backup_share: Option<f64>,
}

impl Global {
    /// The configuration table as read from the environment, with this invocation's flags applied on top.
    pub fn settings(&self, mut s: Settings) -> Settings {
        let e = &self.engine;
        fn set<T: Copy>(slot: &mut T, flag: Option<T>) {
            if let Some(v) = flag {
                *slot = v;
            }
        }
        if let Some(name) = &self.name {
            s.name = name.clone();
        }
        set(&mut s.small_object_threshold, e.small_object_threshold);
        set(&mut s.pack_target_bytes, e.pack_target_bytes);
        set(&mut s.multipart_copy_threshold, e.multipart_copy_threshold);
        set(&mut s.copy_part_bytes, e.copy_part_bytes);
        set(&mut s.concurrency, e.concurrency);
        set(&mut s.target_objects, e.target_objects);
        set(&mut s.batch_objects, e.batch_objects);
        set(&mut s.lease_seconds, e.lease_seconds);
        set(&mut s.late_event_seconds, e.late_event_seconds);
        set(&mut s.step_seconds, e.step_seconds);
        set(&mut s.backup_share, e.backup_share);
        if e.prefix_ceiling_rps.is_some() {
            s.prefix_ceiling_rps = e.prefix_ceiling_rps;
        }
        s
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create the vault's queues, dead-letter queues, control table and (with --vault) vault bucket.
    Init {
        /// Target the local stack (the endpoint from --endpoint-url).
        #[arg(long)]
        local: bool,
        #[arg(long)]
        vault: Option<String>,
        /// Default COMPLIANCE retention of vault objects, in days.
        #[arg(long, default_value_t = 1)]
        retention_days: i32,
        /// Create no KMS key: packs are written unencrypted (unless TIDEMARK_KMS_KEY_ARN names a key).
        #[arg(long)]
        no_kms_key: bool,
        #[arg(long)]
        json: bool,
    },
    /// Back up a bucket (or prefix) into the vault and start capturing its changes.
    Protect {
        #[arg(long)]
        source: String,
        #[arg(long)]
        vault: String,
        /// Seed from this S3 Inventory manifest instead of listing.
        #[arg(long)]
        inventory: Option<String>,
        /// Local workers to run with --wait.
        #[arg(long, default_value_t = 4)]
        workers: usize,
        /// Run the workers here until the run completes, then seal a recovery point.
        #[arg(long)]
        wait: bool,
        /// Do not turn on EventBridge notifications (for S3 servers without them).
        #[arg(long)]
        no_events: bool,
        /// Seed every version and delete marker of a versioned bucket, each at its own time,
        /// not only the current versions [TIDEMARK_ALL_VERSIONS].
        #[arg(long)]
        all_versions: bool,
        #[arg(long)]
        json: bool,
    },
    /// Drain captured changes from the delta queue and seal a recovery point.
    Sync {
        #[arg(long)]
        source: String,
        #[arg(long)]
        vault: String,
        /// Also compare the source with the catalog and capture what the events missed.
        #[arg(long)]
        reconcile: bool,
        /// With --reconcile: compare with this S3 Inventory manifest instead of a listing.
        #[arg(long, requires = "reconcile")]
        inventory: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Merge small delta segments into larger ones; new recovery points list the merged segments.
    Compact {
        #[arg(long)]
        source: String,
        #[arg(long)]
        vault: String,
        /// Segments with fewer records than this are merged.
        #[arg(long, default_value_t = 10_000)]
        small_records: u64,
        /// The most records one merged segment holds.
        #[arg(long, default_value_t = 500_000)]
        max_records: u64,
        #[arg(long)]
        json: bool,
    },
    /// List the state of a bucket or prefix as of a time.
    Ls {
        /// s3://bucket[/prefix]
        url: String,
        #[arg(long)]
        vault: String,
        /// RFC 3339 time; without it, the bucket's recovery points are listed instead.
        #[arg(long)]
        as_of: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Restore a bucket or prefix as of a time into a target (a run; see `restore status`).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Restore {
        #[command(subcommand)]
        action: Option<RestoreAction>,
        #[command(flatten)]
        args: RestoreArgs,
    },
    /// End the protection of a source on purpose: its changes are ignored from now on, no more
    /// points are sealed, and every point sealed so far stays restorable.
    Unprotect {
        #[arg(long)]
        source: String,
        #[arg(long)]
        vault: String,
        #[arg(long)]
        json: bool,
    },
    /// Queue depths, dead letters, and for a source its latest recovery point and RPO; with
    /// --run, a seed or restore run's steps in order.
    Status {
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        vault: Option<String>,
        /// A seed run or restore run id: show its steps (needs --vault).
        #[arg(long, requires = "vault", conflicts_with = "source")]
        run: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Check every byte of the vault against its records: segment hashes, every packed blob's
    /// SHA-256, every large copy's size and ETag; exits non-zero naming what is damaged or missing.
    Verify {
        #[arg(long)]
        vault: String,
        /// Only this source bucket (s3://B); every bucket the vault holds otherwise.
        #[arg(long)]
        source: Option<String>,
        /// Read this share of the packs and large copies, in (0, 1], chosen by key hash so the
        /// same vault gives the same sample [TIDEMARK_VERIFY_SAMPLE].
        #[arg(long)]
        sample: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// Rebuild the control state from the vault: protected sources, the segment registry, the
    /// unprotected keys of the latest points, index entries for packs no segment describes.
    /// Idempotent; safe beside running workers.
    Rebuild {
        #[arg(long)]
        vault: String,
        /// Only this source bucket (s3://B); every bucket the vault holds otherwise.
        #[arg(long)]
        source: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Draw a run's steps (states, timeline, throughput over time) as an HTML page with inline SVG.
    Report {
        #[arg(long)]
        run: String,
        #[arg(long)]
        vault: String,
        #[arg(long)]
        html: std::path::PathBuf,
    },
    /// S3 Inventory reports.
    Inventory {
        #[command(subcommand)]
        command: InventoryCommand,
    },
    /// Serve the REST API (api/openapi.yaml) on a loopback address and run restores here: the
    /// local twin of the deployed API function and restore function.
    Serve {
        /// IP:PORT to listen on; only loopback addresses (127.0.0.1, ::1) are accepted, as the
        /// API has no authentication of its own.
        #[arg(long)]
        listen: String,
        #[arg(long)]
        vault: String,
        /// Restore-queue workers in this process.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Compare scheduling policies on a simulated scenario.
    Simulate {
        #[arg(long)]
        scenario: std::path::PathBuf,
        #[arg(long)]
        seed: Option<u64>,
        #[arg(long)]
        json: bool,
        #[arg(long)]
        report: Option<std::path::PathBuf>,
    },
}

/// `tidemark restore --source … --to …`: start (or continue) a restore run.
#[derive(Args, Debug, Clone)]
pub struct RestoreArgs {
    #[arg(long, required = true)]
    pub source: Option<String>,
    #[arg(long, required = true)]
    pub vault: Option<String>,
    #[arg(long, required = true)]
    pub as_of: Option<String>,
    #[arg(long, required = true)]
    pub to: Option<String>,
    /// copy (into an empty or new target) or rollback (in place).
    #[arg(long, default_value = "copy")]
    pub mode: String,
    /// With rollback: delete keys that did not exist at the time.
    #[arg(long)]
    pub delete_newer: bool,
    /// Plan and report what the restore would write, keep and delete; write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Write this storage class instead of each object's recorded one.
    #[arg(long)]
    pub storage_class: Option<String>,
    /// Write each object's recorded Object Lock retention and legal hold (the target needs Object Lock).
    #[arg(long)]
    pub object_lock: bool,
    /// Write each object's recorded ACL grants (the target needs ACLs enabled).
    #[arg(long)]
    pub acl: bool,
    /// Write the target through this IAM role (a bucket in another account).
    #[arg(long)]
    pub target_role: Option<String>,
    /// Run the restore here and wait for it, with a progress bar (plain lines when not on a
    /// terminal); without it the run id is printed at once and deployed workers do the work.
    #[arg(long)]
    pub wait: bool,
    /// Local workers with --wait.
    #[arg(long, default_value_t = 4)]
    pub workers: usize,
    #[arg(long)]
    pub json: bool,
}

/// `tidemark restore status|resume|list`
#[derive(Subcommand, Debug)]
pub enum RestoreAction {
    /// Show a restore run: state, counts, failures (and a dry run's plan).
    Status {
        id: String,
        #[arg(long)]
        vault: String,
        #[arg(long)]
        json: bool,
    },
    /// Continue a restore run that stopped (killed, or its messages lost).
    Resume {
        id: String,
        #[arg(long)]
        vault: String,
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value_t = 4)]
        workers: usize,
        #[arg(long)]
        json: bool,
    },
    /// List the restore runs of a source bucket, newest first.
    List {
        #[arg(long)]
        source: String,
        #[arg(long)]
        vault: String,
        #[arg(long)]
        json: bool,
    },
}

/// `tidemark inventory …`
#[derive(Subcommand, Debug)]
pub enum InventoryCommand {
    /// Cut the bucket described by an inventory report into balanced partitions.
    Plan {
        /// The report's manifest.json (`file://` path; a directory standing for the destination bucket).
        #[arg(long)]
        manifest: String,
        /// Objects per partition [TIDEMARK_TARGET_OBJECTS].
        #[arg(long)]
        target_objects: Option<u64>,
        /// Protect every version of a versioned report, not only the current ones.
        #[arg(long)]
        all_versions: bool,
        #[arg(long)]
        json: bool,
    },
}
