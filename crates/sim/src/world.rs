//! The world every policy faces alike: prefix sizes, the application's load, S3's capacity rules and the fleet's concurrency ramp.
//!
//! Random draws that the world makes (the application's noise) come from a counter-based hash of
//! (seed, prefix, step), so every policy sees exactly the same application load, and the lower
//! bound is computed against that same load.

use crate::scenario::Scenario;

/// SplitMix64: a small, fast generator whose output is fixed forever, so a seed means the same run
/// on every platform and every version of every dependency.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A uniform draw in [0, 1).
    pub(crate) fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Rounds an expected count to a whole number, up with probability equal to its fraction.
    pub(crate) fn round(&mut self, expected: f64) -> u64 {
        let floor = expected.floor();
        let extra = if self.f64() < expected - floor { 1.0 } else { 0.0 };
        (floor + extra) as u64
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// 64 random bits that depend only on the three inputs.
fn hash(seed: u64, a: u64, b: u64) -> u64 {
    mix(seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03).rotate_left(29))
}

/// One prefix as the scenario defines it.
#[derive(Clone, Debug)]
pub(crate) struct PrefixSpec {
    pub(crate) name: String,
    pub(crate) objects: f64,
    /// The application's mean load in requests per second, before the diurnal swing and noise.
    pub(crate) app_base_rps: f64,
}

/// Everything about a scenario that does not depend on the policy.
#[derive(Clone, Debug)]
pub(crate) struct World {
    pub(crate) scenario: Scenario,
    pub(crate) seed: u64,
    pub(crate) prefixes: Vec<PrefixSpec>,
    /// The prefixes drawn one by one in plots (the largest), the rest are summed as "other".
    pub(crate) plotted: Vec<usize>,
    pub(crate) total_objects: f64,
}

/// How many of the largest prefixes the report plots one by one.
pub(crate) const PLOTTED_PREFIXES: usize = 6;

impl World {
    pub(crate) fn new(scenario: &Scenario, seed: u64) -> World {
        let count = scenario.objects.prefixes as usize;
        let s = scenario.objects.zipf_exponent;
        let weights: Vec<f64> = (1..=count).map(|i| (i as f64).powf(-s)).collect();
        let weight_sum: f64 = weights.iter().sum();
        // Whole objects per prefix; the remainder of the rounding goes to the largest prefix so
        // that the total is exactly the scenario's.
        let mut objects: Vec<f64> = weights.iter().map(|w| (scenario.objects.total * w / weight_sum).floor().max(1.0)).collect();
        let assigned: f64 = objects.iter().sum();
        objects[0] += scenario.objects.total.round() - assigned;
        let app_weights: Vec<f64> = objects.iter().map(|o| o.powf(scenario.app.size_correlation)).collect();
        let max_app_weight = app_weights.iter().cloned().fold(0.0, f64::max);
        let initial_capacity = f64::from(scenario.s3.initial_partitions) * scenario.s3.partition_rps;
        // The busiest prefix peaks at peak_utilization of its capacity; the others scale with
        // their weight.
        let busiest_base = scenario.app.peak_utilization * initial_capacity / (1.0 + scenario.app.diurnal_amplitude);
        let width = (count as f64).log10().floor() as usize + 1;
        let prefixes: Vec<PrefixSpec> = objects
            .iter()
            .zip(&app_weights)
            .enumerate()
            .map(|(i, (&objects, &w))| PrefixSpec {
                name: format!("tenants/t{:0width$}/", i + 1, width = width),
                objects,
                app_base_rps: busiest_base * w / max_app_weight,
            })
            .collect();
        let plotted = (0..count.min(PLOTTED_PREFIXES)).collect();
        World { scenario: scenario.clone(), seed, total_objects: objects.iter().sum(), prefixes, plotted }
    }

    /// The diurnal multiplier of the application's load at `t` seconds into the run.
    pub(crate) fn diurnal(&self, t: f64) -> f64 {
        let app = &self.scenario.app;
        let hour = app.start_hour_utc + t / 3600.0;
        1.0 + app.diurnal_amplitude * (std::f64::consts::TAU * (hour - app.peak_hour_utc) / 24.0).cos()
    }

    /// The application's load on prefix `p` during step `step`, given that step's diurnal multiplier.
    pub(crate) fn app_rps(&self, p: usize, step: u64, diurnal: f64) -> f64 {
        let noise = self.scenario.app.noise;
        let base = self.prefixes[p].app_base_rps * diurnal;
        if noise == 0.0 {
            return base;
        }
        // The sum of two uniforms, centred and scaled, has mean 0 and variance 1 and is bounded
        // (at about 2.45 standard deviations), which keeps the load positive and cheap to draw.
        let h = hash(self.seed, p as u64, step);
        let u1 = (h & 0xFFFF_FFFF) as f64 / 4_294_967_296.0;
        let u2 = (h >> 32) as f64 / 4_294_967_296.0;
        let z = (u1 + u2 - 1.0) * 6f64.sqrt();
        (base * (1.0 + noise * z)).max(0.0)
    }

    /// Capacity of prefix `p` with `partitions` partitions.
    pub(crate) fn capacity(&self, partitions: u32) -> f64 {
        f64::from(partitions) * self.scenario.s3.partition_rps
    }

    /// The most partitions any policy can have caused by `t`: one doubling per `split_after_s` of
    /// sustained load from the start, up to the maximum.
    pub(crate) fn partitions_upper_bound(&self, t: f64) -> u32 {
        let s3 = &self.scenario.s3;
        let doublings = (t / s3.split_after_s).floor().min(31.0) as u32;
        let bound = u64::from(s3.initial_partitions) << doublings;
        bound.min(u64::from(s3.max_partitions)) as u32
    }

    /// Workers the event source lets run at `t`: SQS starts at a few and adds some per minute.
    pub(crate) fn concurrency(&self, t: f64) -> usize {
        let fleet = &self.scenario.fleet;
        let ramped = f64::from(fleet.initial_concurrency) + f64::from(fleet.ramp_per_minute) * t / 60.0;
        (ramped.floor() as usize).min(fleet.max_concurrency as usize)
    }

    /// Requests per second one worker can send with all its slots busy.
    pub(crate) fn worker_rps(&self) -> f64 {
        f64::from(self.scenario.fleet.requests_in_flight) / self.scenario.fleet.request_latency_s
    }

    /// Steps before the run gives up.
    pub(crate) fn max_steps(&self) -> u64 {
        (self.scenario.time.max_days * 86_400.0 / self.scenario.time.step_s).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> Scenario {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios/reference.toml");
        Scenario::from_file(&path).unwrap()
    }

    #[test]
    fn prefixes_follow_zipf_and_add_up() {
        let world = World::new(&reference(), 1);
        assert_eq!(world.prefixes.len(), 500);
        assert_eq!(world.total_objects, 24.5e9);
        // Zipf 1.0: the i-th prefix holds 1/i of the first one's share, up to rounding.
        for i in [2usize, 10, 100, 500] {
            let ratio = world.prefixes[0].objects / world.prefixes[i - 1].objects;
            assert!((ratio / i as f64 - 1.0).abs() < 1e-3, "prefix {i}: ratio {ratio}");
        }
        // The busiest prefix peaks at 70 % of one partition.
        let busiest = world.prefixes.iter().map(|p| p.app_base_rps).fold(0.0, f64::max);
        assert!((busiest * 1.4 - 0.7 * 5_500.0).abs() < 1e-6);
        assert_eq!(world.prefixes[0].name, "tenants/t001/");
    }

    #[test]
    fn capacity_ramp_and_diurnal_rules() {
        let world = World::new(&reference(), 1);
        // (seconds, partitions at most, workers allowed)
        let cases: &[(f64, u32, usize)] =
            &[(0.0, 1, 5), (60.0, 1, 305), (2_699.0, 1, 1_000), (2_700.0, 2, 1_000), (8_100.0, 8, 1_000), (1e6, 8, 1_000)];
        for &(t, partitions, workers) in cases {
            assert_eq!(world.partitions_upper_bound(t), partitions, "t = {t}");
            assert_eq!(world.concurrency(t), workers, "t = {t}");
        }
        // The run starts at 09:00 UTC and the application peaks at 15:00.
        assert!((world.diurnal(6.0 * 3600.0) - 1.4).abs() < 1e-9);
        assert!((world.diurnal(18.0 * 3600.0) - 0.6).abs() < 1e-9);
        // Noise is the same for a (prefix, step) whoever asks, and differs between steps.
        assert_eq!(world.app_rps(3, 17, 1.0), world.app_rps(3, 17, 1.0));
        assert_ne!(world.app_rps(3, 17, 1.0), world.app_rps(3, 18, 1.0));
    }

    #[test]
    fn rng_rounds_expected_counts_without_bias() {
        let mut rng = Rng::new(42);
        let total: u64 = (0..100_000).map(|_| rng.round(0.25)).sum();
        assert!((total as f64 / 100_000.0 - 0.25).abs() < 0.01, "{total}");
        assert_eq!(rng.round(3.0), 3);
    }
}
