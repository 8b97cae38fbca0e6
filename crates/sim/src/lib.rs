//! Simulator of S3 partitions, application load, the Lambda fleet and scheduling policies.
//!
//! `tidemark simulate` runs one scenario (a TOML file) under three policies and compares them on
//! the same world, seed for seed:
//!
//! - `tidemark`: the engine's per-prefix controller ([`tidemark_core::scheduler`]), shared by
//!   the fleet, with admission, deferral and yielding;
//! - `fixed`: every worker keeps its slots busy and retries throttled requests with exponential
//!   back-off, as s5cmd and rclone do;
//! - `sdk-adaptive`: the AWS SDK's adaptive retry mode, a CUBIC limiter per client, one client
//!   per worker.
//!
//! The world: prefixes with Zipf-skewed sizes, each with S3 capacity that doubles after sustained
//! load (up to a maximum), an application whose load follows the day and shares that capacity,
//! and a Lambda fleet with a concurrency limit, the SQS ramp, cold starts and request latency.
//! Rates move in time steps rather than request by request, so the reference scenario (24.5
//! billion objects, 1,000 workers) runs in seconds. Each report carries a lower bound on the
//! makespan that no policy can beat (see [`bound`](crate::bound)), the application's and the
//! backup's 503s, the requests and their cost.
//!
//! ```no_run
//! let report = tidemark_sim::run_scenario_file(std::path::Path::new("tests/scenarios/small.toml"), None)?;
//! println!("{}", serde_json::to_string_pretty(&report).unwrap());
//! std::fs::write("report.html", tidemark_sim::render_html(&report)).unwrap();
//! # Ok::<(), tidemark_sim::SimError>(())
//! ```

mod bound;
mod engine;
mod error;
mod html;
mod policy;
mod report;
mod scenario;
mod world;

use std::path::Path;

pub use engine::Sample;
pub use error::SimError;
pub use html::render_html;
pub use policy::Policy;
pub use report::{CostBreakdown, PolicyReport, SimReport, REFERENCE_CUSTOMER_DAYS, REFERENCE_OBJECTS};
pub use scenario::{
    AppConfig, FixedConfig, FleetConfig, ObjectsConfig, PoliciesConfig, Prices, S3Config, Scenario, SdkAdaptiveConfig, TidemarkConfig,
    TimeConfig,
};

/// Loads a scenario file and runs it under every policy; `seed_override` replaces its seed.
pub fn run_scenario_file(path: &Path, seed_override: Option<u64>) -> Result<SimReport, SimError> {
    let scenario = Scenario::from_file(path)?;
    Ok(run_scenario(&scenario, seed_override))
}

/// Runs a checked scenario under every policy; `seed_override` replaces its seed.
///
/// The policies run on their own threads; each is deterministic for the seed, so the report is too.
pub fn run_scenario(scenario: &Scenario, seed_override: Option<u64>) -> SimReport {
    let seed = seed_override.unwrap_or(scenario.seed);
    let world = world::World::new(scenario, seed);
    let (bound, outcomes) = std::thread::scope(|scope| {
        let handles: Vec<_> = Policy::ALL
            .iter()
            .map(|&policy| {
                let world = &world;
                scope.spawn(move || (policy, engine::simulate(world, policy)))
            })
            .collect();
        let bound = bound::lower_bound(&world);
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect();
        (bound, outcomes)
    });
    let policies = outcomes.into_iter().map(|(policy, outcome)| report::policy_report(&world, &bound, policy, outcome)).collect();
    SimReport {
        scenario: scenario.name.clone(),
        seed,
        objects: world.total_objects,
        prefixes: scenario.objects.prefixes,
        workers: scenario.fleet.max_concurrency,
        lower_bound_s: bound.seconds,
        lower_bound_fleet_only_s: bound.fleet_only_s,
        lower_bound_slowest_prefix_s: bound.slowest_prefix_s,
        reference_customer_days: REFERENCE_CUSTOMER_DAYS,
        plotted_prefixes: world.plotted.iter().map(|&p| world.prefixes[p].name.clone()).collect(),
        policies,
    }
}
