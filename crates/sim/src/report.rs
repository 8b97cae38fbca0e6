//! The simulation report: the figures `tidemark simulate --json` prints (a contract), and the time series the HTML report plots.

use serde::Serialize;

use crate::bound::LowerBound;
use crate::engine::{Outcome, Sample};
use crate::policy::Policy;
use crate::world::World;

/// The objects in the reference customer's initial backup, for `projected_days`.
pub const REFERENCE_OBJECTS: f64 = 24.5e9;

/// Days the reference customer's initial backup of 24.5 billion objects took (vendor figure,
/// clumio.com/customer-stories/atlassian), shown next to the projection.
pub const REFERENCE_CUSTOMER_DAYS: f64 = 17.0;

/// One run of a scenario under every policy.
///
/// Its JSON is one object with `lower_bound_s` and `policies`, each policy with `policy`,
/// `makespan_s`, `app_503_share`, `backup_503`, `requests` and `cost_usd`; those keys are a
/// contract with scripts, the others may grow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SimReport {
    /// The scenario's name.
    pub scenario: String,
    /// The seed the run used.
    pub seed: u64,
    /// Objects in the bucket.
    pub objects: f64,
    /// Partitioned prefixes.
    pub prefixes: u32,
    /// Workers at most (the event source's MaximumConcurrency).
    pub workers: u32,
    /// Seconds: no policy can finish sooner, given the capacity the application leaves free and
    /// the fleet's concurrency.
    pub lower_bound_s: f64,
    /// Seconds if only the fleet's concurrency limited the backup.
    pub lower_bound_fleet_only_s: f64,
    /// Seconds if only the slowest prefix's free capacity limited the backup.
    pub lower_bound_slowest_prefix_s: f64,
    /// The reference customer's days for 24.5 billion objects, for comparison with `projected_days`.
    pub reference_customer_days: f64,
    /// The largest prefixes, plotted one by one in the HTML report.
    pub plotted_prefixes: Vec<String>,
    /// One entry per policy, tidemark first.
    pub policies: Vec<PolicyReport>,
}

/// One policy's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyReport {
    /// `tidemark`, `fixed` or `sdk-adaptive`.
    pub policy: Policy,
    /// False when the run hit `time.max_days`; `makespan_s` is then only where it stopped.
    pub finished: bool,
    /// Seconds until the last object was copied.
    pub makespan_s: f64,
    /// `makespan_s / lower_bound_s`.
    pub ratio_to_lower_bound: f64,
    /// Days this pace would take for 24.5 billion objects.
    pub projected_days: f64,
    /// Requests the application sent during the backup.
    pub app_requests: f64,
    /// Of those, how many S3 answered with 503.
    pub app_503: f64,
    /// `app_503 / app_requests`.
    pub app_503_share: f64,
    /// The application's 503 share on its worst prefix, over the whole run.
    pub app_503_worst_prefix_share: f64,
    /// The application's 503 share in its worst sample interval (`time.sample_s`), all prefixes.
    pub app_503_worst_interval_share: f64,
    /// 503s the backup received.
    pub backup_503: f64,
    /// `backup_503` over the backup's requests to the source.
    pub backup_503_share: f64,
    /// S3 requests the backup sent: to the source (503s included) and pack writes to the vault.
    pub requests: f64,
    /// Requests that ran out of retries (their objects are retried in a later pass).
    pub failed_requests: f64,
    /// Partition splits the load caused.
    pub splits: u64,
    /// Tasks put back because their prefix had no room (tidemark).
    pub deferrals: f64,
    /// Tasks checkpointed and yielded after a cut (tidemark).
    pub yields: f64,
    /// Rate cuts of the shared per-prefix controllers (tidemark).
    pub cuts: f64,
    /// Lambda invocations.
    pub invocations: f64,
    /// Lambda GB-seconds.
    pub lambda_gb_s: f64,
    /// Total cost in US dollars.
    pub cost_usd: f64,
    /// Where the cost goes.
    pub cost_breakdown: CostBreakdown,
    /// The time series plotted in the HTML report (not part of the JSON).
    #[serde(skip)]
    pub samples: Vec<Sample>,
}

/// Cost by service, in US dollars.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CostBreakdown {
    /// Source GETs of small objects (503s are not billed).
    pub s3_get: f64,
    /// Vault PUTs of packs and server-side copies of large objects.
    pub s3_put: f64,
    /// Lambda duration and invocations.
    pub lambda: f64,
    /// SQS requests.
    pub sqs: f64,
    /// DynamoDB reads and writes (leases, checkpoints, the shared controller state).
    pub dynamodb: f64,
}

pub(crate) fn policy_report(world: &World, bound: &LowerBound, policy: Policy, outcome: Outcome) -> PolicyReport {
    let scenario = &world.scenario;
    let prices = &scenario.prices;
    let objects = outcome.objects_done;
    let large = objects * scenario.objects.large_fraction;
    let small = objects - large;
    let pack_puts = small / scenario.objects.objects_per_pack * scenario.objects.puts_per_pack;
    let gb_s = outcome.worker_seconds * scenario.fleet.memory_mb / 1024.0;
    // S3 bills 200s and 4xx but not 5xx, so throttled attempts cost nothing; the objects that
    // succeeded cost one GET (small) or one COPY (large) each.
    let cost = CostBreakdown {
        s3_get: small * prices.s3_get_per_1000 / 1000.0,
        s3_put: (pack_puts + large) * prices.s3_put_per_1000 / 1000.0,
        lambda: gb_s * prices.lambda_gb_s + outcome.invocations * prices.lambda_per_million / 1e6,
        sqs: outcome.sqs_requests * prices.sqs_per_million / 1e6,
        dynamodb: outcome.ddb_writes * prices.ddb_write_per_million / 1e6 + outcome.ddb_reads * prices.ddb_read_per_million / 1e6,
    };
    let share = |part: f64, whole: f64| if whole > 0.0 { part / whole } else { 0.0 };
    PolicyReport {
        policy,
        finished: outcome.finished,
        makespan_s: outcome.makespan_s,
        ratio_to_lower_bound: share(outcome.makespan_s, bound.seconds),
        projected_days: outcome.makespan_s / 86_400.0 * REFERENCE_OBJECTS / world.total_objects,
        app_requests: outcome.app_requests,
        app_503: outcome.app_503,
        app_503_share: share(outcome.app_503, outcome.app_requests),
        app_503_worst_prefix_share: outcome.worst_prefix_app_503_share,
        app_503_worst_interval_share: outcome.samples.iter().map(|s| share(s.app_503_per_s.iter().sum(), s.app_rps)).fold(0.0, f64::max),
        backup_503: outcome.backup_503,
        backup_503_share: share(outcome.backup_503, outcome.backup_attempts),
        requests: outcome.backup_attempts + pack_puts,
        failed_requests: outcome.failed_requests,
        splits: outcome.splits,
        deferrals: outcome.deferrals,
        yields: outcome.yields,
        cuts: outcome.cuts,
        invocations: outcome.invocations,
        lambda_gb_s: gb_s,
        cost_usd: cost.s3_get + cost.s3_put + cost.lambda + cost.sqs + cost.dynamodb,
        cost_breakdown: cost,
        samples: outcome.samples,
    }
}
