//! The three scheduling policies' per-worker mechanics: retry back-off pools and the SDK's per-client CUBIC limiter.
//!
//! tidemark's own controller is not here: the simulator calls the engine's
//! [`tidemark_core::scheduler`] directly, so what is measured is the code that ships.

use serde::Serialize;

/// The policies a run compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Policy {
    /// tidemark: one fleet-shared CUBIC controller per prefix, admission and deferral.
    #[serde(rename = "tidemark")]
    Tidemark,
    /// Fixed concurrency, every worker retrying throttled requests with back-off (s5cmd, rclone).
    #[serde(rename = "fixed")]
    Fixed,
    /// The AWS SDK's adaptive retry mode: a CUBIC token bucket per client, one client per worker.
    #[serde(rename = "sdk-adaptive")]
    SdkAdaptive,
}

impl Policy {
    /// Every policy, in report order.
    pub const ALL: [Policy; 3] = [Policy::Tidemark, Policy::Fixed, Policy::SdkAdaptive];

    /// The name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Policy::Tidemark => "tidemark",
            Policy::Fixed => "fixed",
            Policy::SdkAdaptive => "sdk-adaptive",
        }
    }

    /// Mixed into the seed so that each policy's own draws (which task a worker receives) are
    /// independent of the others' but fixed for a seed.
    pub(crate) fn salt(self) -> u64 {
        match self {
            Policy::Tidemark => 0x7469_6465,
            Policy::Fixed => 0x6669_7865,
            Policy::SdkAdaptive => 0x7364_6b61,
        }
    }
}

/// How a retrying client behaves at a given throttle probability, averaged over its retry levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct RetryMix {
    /// Of the requests that get a 503, the share that has used up its retries and fails.
    pub(crate) final_share: f64,
    /// Mean seconds a slot sleeps after a 503 that will be retried.
    pub(crate) mean_sleep_s: f64,
}

/// Averages a retry schedule over its levels, for a per-attempt throttle probability `q`.
///
/// A request reaches attempt `i` with probability `q^i`. A 503 on attempt `i < delays.len()` sleeps
/// `delays[i]` and retries; a 503 on the last attempt fails the request.
pub(crate) fn retry_mix(q: f64, delays: &[f64]) -> RetryMix {
    let q = q.clamp(0.0, 1.0);
    let mut reach = 1.0;
    let mut sleep_weighted = 0.0;
    let mut retried = 0.0;
    for &delay in delays {
        sleep_weighted += reach * delay;
        retried += reach;
        reach *= q;
    }
    let final_weight = reach;
    RetryMix {
        final_share: final_weight / (retried + final_weight),
        mean_sleep_s: if retried > 0.0 { sleep_weighted / retried } else { 0.0 },
    }
}

/// aws-sdk-go v1's DefaultRetryer for throttles, as s5cmd uses it: retry `i` waits
/// `2^i x U[min, 2 min]`, at most `max`; the mean of the jitter is 1.5 x min.
pub(crate) fn go_v1_throttle_delays(retries: u32, min_s: f64, max_s: f64) -> Vec<f64> {
    (0..retries).map(|i| (1.5 * min_s * 2f64.powi(i as i32)).min(max_s)).collect()
}

/// smithy-rs standard retry: retry `i` waits `U[0, 1) x initial x 2^i`, at most `max`.
pub(crate) fn smithy_standard_delays(attempts: u32, initial_s: f64, max_s: f64) -> Vec<f64> {
    (0..attempts.saturating_sub(1)).map(|i| 0.5 * (initial_s * 2f64.powi(i as i32)).min(max_s)).collect()
}

/// Slots sleeping in back-off after 503s, as a fluid: `dS/dt = (slots - S) e - S / m`, where `e`
/// is the rate at which an active slot enters back-off and `m` the mean sleep.
///
/// The equation is linear, so it is solved exactly over a step (long steps stay stable), and the
/// coefficients depend only on the prefix's throttle rate: they are computed once per prefix and
/// step and applied to every worker there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Sleepers {
    rest: f64,
    decay: f64,
    mean_factor: f64,
}

impl Sleepers {
    pub(crate) fn new(slots: f64, entry_per_active_slot: f64, mean_sleep_s: f64, dt: f64) -> Sleepers {
        if mean_sleep_s <= 0.0 {
            // Nobody sleeps: every slot wakes at once.
            return Sleepers { rest: 0.0, decay: 0.0, mean_factor: 0.0 };
        }
        let rate = entry_per_active_slot + 1.0 / mean_sleep_s;
        let decay = (-rate * dt).exp();
        Sleepers { rest: slots * entry_per_active_slot / rate, decay, mean_factor: (1.0 - decay) / (rate * dt) }
    }

    /// From `sleeping` slots at the start of a step: the mean over the step and the number at its end.
    pub(crate) fn advance(&self, sleeping: f64) -> (f64, f64) {
        let gap = sleeping - self.rest;
        (self.rest + gap * self.mean_factor, self.rest + gap * self.decay)
    }
}

/// The AWS SDK's adaptive rate limiter (smithy-rs `ClientRateLimiter`), one per client.
///
/// Off until the first throttle; on a throttle the fill rate becomes β times the lower of the
/// measured and the current fill rate, and a CUBIC curve (scale 0.4 requests/s³) brings it back;
/// the new rate is never above twice the measured rate, nor below 0.5 requests per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SdkLimiter {
    enabled: bool,
    fill_rate: f64,
    measured: f64,
    last_max: f64,
    last_throttle_s: f64,
    window_s: f64,
}

const SDK_BETA: f64 = 0.7;
const SDK_SCALE: f64 = 0.4;
const SDK_SMOOTH: f64 = 0.8;
const SDK_MIN_FILL: f64 = 0.5;
/// The most cuts one worker's limiter takes in one step; at β = 0.7 fifty cuts reach the floor
/// from any rate a worker can send, so the cap only bounds the work per step.
const SDK_MAX_CUTS_PER_STEP: u32 = 50;

impl Default for SdkLimiter {
    fn default() -> Self {
        SdkLimiter { enabled: false, fill_rate: SDK_MIN_FILL, measured: 0.0, last_max: 0.0, last_throttle_s: 0.0, window_s: 0.0 }
    }
}

impl SdkLimiter {
    /// The most this client may send, in requests per second.
    pub(crate) fn limit(&self) -> f64 {
        if self.enabled {
            self.fill_rate
        } else {
            f64::INFINITY
        }
    }

    fn on_throttle(&mut self, t: f64) {
        let rate_to_use = if self.enabled { self.measured.min(self.fill_rate) } else { self.measured };
        self.last_max = rate_to_use;
        self.window_s = (self.last_max * (1.0 - SDK_BETA) / SDK_SCALE).cbrt();
        self.last_throttle_s = t;
        self.enabled = true;
        let calculated = rate_to_use * SDK_BETA;
        self.fill_rate = calculated.min(2.0 * self.measured).max(SDK_MIN_FILL);
    }

    fn on_success(&mut self, t: f64) {
        let x = t - self.last_throttle_s - self.window_s;
        let calculated = SDK_SCALE * x * x * x + self.last_max;
        self.fill_rate = calculated.min(2.0 * self.measured).max(SDK_MIN_FILL);
    }

    /// Runs one step in which the client wants to send `want_rps` and each request is throttled
    /// with probability `q`. Throttles arrive one by one; each cuts the limiter at once, which
    /// slows the rest of the step. Returns the requests sent.
    pub(crate) fn step(&mut self, want_rps: f64, q: f64, t: f64, dt: f64) -> f64 {
        let mut elapsed = 0.0;
        let mut sent = 0.0;
        let mut cuts = 0;
        // The SDK smooths its measured rate over half-second buckets, so within a step the cuts
        // see the rate measured before it.
        let measured_before = self.measured;
        loop {
            let rate = want_rps.min(self.limit());
            let next_throttle = if q > 0.0 && rate > 0.0 { 1.0 / (rate * q) } else { f64::INFINITY };
            if elapsed + next_throttle > dt || cuts >= SDK_MAX_CUTS_PER_STEP {
                sent += rate * (dt - elapsed);
                break;
            }
            sent += rate * next_throttle;
            elapsed += next_throttle;
            cuts += 1;
            self.measured = measured_before.max(rate);
            self.on_throttle(t + elapsed);
        }
        self.measured = SDK_SMOOTH * (sent / dt) + (1.0 - SDK_SMOOTH) * measured_before;
        self.on_success(t + dt);
        sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_mix_weights_levels_by_how_often_they_are_reached() {
        let delays = [1.0, 2.0, 4.0];
        // (q, final share, mean sleep)
        let cases: &[(f64, f64, f64)] = &[(0.0, 0.0, 1.0), (1.0, 0.25, 7.0 / 3.0), (0.5, 0.125 / 1.875, (1.0 + 1.0 + 1.0) / 1.75)];
        for &(q, final_share, mean) in cases {
            let mix = retry_mix(q, &delays);
            assert!((mix.final_share - final_share).abs() < 1e-12, "q {q}: {mix:?}");
            assert!((mix.mean_sleep_s - mean).abs() < 1e-12, "q {q}: {mix:?}");
        }
        // Without retries every throttled request fails.
        assert_eq!(retry_mix(0.3, &[]).final_share, 1.0);
    }

    #[test]
    fn retry_schedules_match_their_clients() {
        assert_eq!(go_v1_throttle_delays(4, 0.5, 5.0), vec![0.75, 1.5, 3.0, 5.0]);
        assert_eq!(smithy_standard_delays(3, 1.0, 20.0), vec![0.5, 1.0]);
    }

    #[test]
    fn sleepers_relax_to_the_rest_point() {
        // 10 slots, each active slot enters back-off at 1/s, sleeps 1 s: half the slots sleep.
        let (_, end) = Sleepers::new(10.0, 1.0, 1.0, 100.0).advance(0.0);
        assert!((end - 5.0).abs() < 1e-9);
        // With no new 503s, sleepers wake at 1/m: after one mean sleep, 1/e of them are left.
        let (mean, end) = Sleepers::new(10.0, 0.0, 2.0, 2.0).advance(10.0);
        assert!((end - 10.0 * (-1.0f64).exp()).abs() < 1e-9);
        assert!(mean < 10.0 && mean > end);
        // Without a sleep there are no sleepers.
        assert_eq!(Sleepers::new(10.0, 1.0, 0.0, 1.0).advance(4.0), (0.0, 0.0));
    }

    #[test]
    fn sdk_limiter_cuts_per_throttle_and_recovers_on_a_cubic() {
        let mut limiter = SdkLimiter::default();
        // Unthrottled it sends what it wants and stays off.
        let sent = limiter.step(80.0, 0.0, 0.0, 1.0);
        assert_eq!(sent, 80.0);
        assert_eq!(limiter.limit(), f64::INFINITY);
        // At a 10 % throttle rate a throttle arrives every 10 requests, and each cuts the rate by
        // 0.7: 80, 56, 39.2, 27.4 requests per second for 10 requests each, then 19.2 for the
        // rest of the second.
        let sent = limiter.step(80.0, 0.1, 1.0, 1.0);
        let rest = 1.0 - (1.0 / 8.0 + 1.0 / 5.6 + 1.0 / 3.92 + 1.0 / 2.744);
        assert!((sent - (40.0 + 19.208 * rest)).abs() < 1e-6, "{sent}");
        let cut = limiter.limit();
        assert!(cut < 80.0 * 0.7f64.powi(3), "{cut}");
        // Without throttles it climbs back, never above twice what it measured.
        let mut t = 2.0;
        let mut previous = cut;
        for _ in 0..20 {
            limiter.step(80.0, 0.0, t, 1.0);
            t += 1.0;
            assert!(limiter.limit() >= previous - 1e-9);
            previous = limiter.limit();
        }
        assert!(previous >= 80.0, "{previous}");
    }
}
