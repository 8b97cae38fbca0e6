//! The lower bound on any policy's makespan, from the capacity the application leaves free and the fleet's concurrency.
//!
//! Every object needs at least one successful request to its prefix. By time `T` no policy can
//! have sent more than:
//!
//! - per prefix `p`: the capacity the application left free on `p`, where capacity is the most
//!   partitions any load could have caused by then (one doubling per `split_after_s` from the
//!   start, up to the maximum), and no more than the fleet could send;
//! - in total: the fleet's rate (the concurrency the event source allows at each moment, times
//!   what one worker can send), and no more than the free capacity of all prefixes together.
//!
//! Both are cuts of the flow network (steps x prefixes), so their minimum bounds the work that
//! can be done by `T` from above; the bound is the first step at which it covers every object.
//! It leaves out cold starts, task overheads and the granularity of tasks, which only make any
//! real policy slower, so it is a true lower bound and a slightly optimistic one.

use crate::world::World;

/// The lower bound, and the simpler bounds it refines (for the report).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct LowerBound {
    /// Seconds: the bound itself.
    pub(crate) seconds: f64,
    /// Seconds if only the fleet's concurrency counted.
    pub(crate) fleet_only_s: f64,
    /// Seconds if only the slowest prefix's free capacity counted.
    pub(crate) slowest_prefix_s: f64,
}

pub(crate) fn lower_bound(world: &World) -> LowerBound {
    let dt = world.scenario.time.step_s;
    let n = world.prefixes.len();
    let need: Vec<f64> = world.prefixes.iter().map(|p| p.objects).collect();
    let total = world.total_objects;
    // Work each prefix alone could have had done by now, capped by what it needs.
    let mut per_prefix = vec![0.0f64; n];
    let mut per_prefix_capped_sum = 0.0f64;
    let mut all_prefixes = 0.0f64;
    let mut fleet_only = 0.0f64;
    let mut fleet_only_s = None;
    let mut bound_s = None;
    let mut prefix_done_at: Vec<Option<f64>> = vec![None; n];
    let worker_rps = world.worker_rps();
    for step in 0..world.max_steps() {
        let t = step as f64 * dt;
        let fleet = world.concurrency(t) as f64 * worker_rps;
        let capacity = world.capacity(world.partitions_upper_bound(t));
        let diurnal = world.diurnal(t);
        let mut free_sum = 0.0;
        for p in 0..n {
            let free = (capacity - world.app_rps(p, step, diurnal)).max(0.0);
            free_sum += free;
            let before = per_prefix[p];
            per_prefix[p] += free.min(fleet) * dt;
            if before < need[p] {
                per_prefix_capped_sum += per_prefix[p].min(need[p]) - before;
                if per_prefix[p] >= need[p] && prefix_done_at[p].is_none() {
                    prefix_done_at[p] = Some(t);
                }
            }
        }
        all_prefixes += fleet.min(free_sum) * dt;
        fleet_only += fleet * dt;
        if fleet_only_s.is_none() && fleet_only >= total {
            fleet_only_s = Some(t);
        }
        // The bound is the start of the first step by whose end the work could be done, which
        // errs on the side of a lower bound by at most one step.
        if bound_s.is_none() && all_prefixes.min(per_prefix_capped_sum) >= total - 0.5 {
            bound_s = Some(t);
        }
        if bound_s.is_some() && fleet_only_s.is_some() && prefix_done_at.iter().all(Option::is_some) {
            break;
        }
    }
    let horizon = world.max_steps() as f64 * dt;
    LowerBound {
        seconds: bound_s.unwrap_or(horizon),
        fleet_only_s: fleet_only_s.unwrap_or(horizon),
        slowest_prefix_s: prefix_done_at.iter().map(|d| d.unwrap_or(horizon)).fold(0.0, f64::max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    /// A one- or two-prefix world with no noise and no diurnal swing, so the bound can be worked
    /// out by hand.
    fn world(prefixes: u32, objects: f64, workers: u32, partition_rps: f64, max_partitions: u32, app_share: f64) -> World {
        let text = format!(
            r#"
name = "bound"
seed = 1
[time]
step_s = 1.0
sample_s = 10.0
max_days = 2.0
[objects]
total = {objects}
prefixes = {prefixes}
zipf_exponent = 0.0
large_fraction = 0.0
objects_per_pack = 600
puts_per_pack = 6
[s3]
partition_rps = {partition_rps}
initial_partitions = 1
max_partitions = {max_partitions}
split_after_s = 100
split_utilization = 0.8
[app]
peak_utilization = {app_share}
size_correlation = 0.0
diurnal_amplitude = 0.0
peak_hour_utc = 0
start_hour_utc = 0
noise = 0.0
[fleet]
max_concurrency = {workers}
initial_concurrency = {workers}
ramp_per_minute = 0
requests_in_flight = 10
request_latency_s = 0.1
cold_start_s = 0
task_objects = 1000
invocation_timeout_s = 900
task_overhead_s = 0
defer_overhead_s = 0
memory_mb = 1024
"#
        );
        let scenario = Scenario::from_toml_str(&text, "test").unwrap();
        World::new(&scenario, 1)
    }

    #[test]
    fn bounds_match_hand_computations() {
        // (world, expected bound in seconds, why)
        let cases: Vec<(World, f64, &str)> = vec![
            // 10 workers x 100 requests/s = 1,000/s against ample capacity: 100,000 objects in 100 s.
            (world(2, 100_000.0, 10, 1.0e9, 1, 0.0), 100.0, "fleet-bound"),
            // One prefix at 500/s with a huge fleet: 100,000 objects in 200 s.
            (world(1, 100_000.0, 1_000, 500.0, 1, 0.0), 200.0, "capacity-bound"),
            // The application takes 40 % of it, leaving 300/s: 333.3 s, so the step at 333 s.
            (world(1, 100_000.0, 1_000, 500.0, 1, 0.4), 333.0, "free capacity"),
            // Splits at 100 s at the earliest: 100 s at 500/s, then 1,000/s for the rest, 150 s.
            (world(1, 100_000.0, 1_000, 500.0, 2, 0.0), 149.0, "with a split"),
        ];
        for (w, expected, why) in cases {
            let bound = lower_bound(&w);
            assert!((bound.seconds - expected).abs() <= 1.0, "{why}: {} s, expected {expected} s", bound.seconds);
            assert!(bound.seconds >= bound.fleet_only_s.min(bound.slowest_prefix_s), "{why}");
        }
    }

    #[test]
    fn the_combined_bound_is_tighter_than_either_part() {
        // Two equal prefixes at 500/s each and a fleet of 800/s: together they could take 1,000/s
        // but the fleet sends 800/s; alone each needs 100 s, the fleet alone 125 s.
        let w = world(2, 100_000.0, 8, 500.0, 1, 0.0);
        let bound = lower_bound(&w);
        assert!((bound.fleet_only_s - 125.0).abs() <= 1.0, "{bound:?}");
        assert!((bound.slowest_prefix_s - 99.0).abs() <= 1.0, "{bound:?}");
        assert!(bound.seconds >= bound.fleet_only_s && bound.seconds >= bound.slowest_prefix_s, "{bound:?}");
    }
}
