//! Per-prefix adaptive rate control under S3 back-pressure: the fleet-wide CUBIC controller and the admission decision a worker makes before it copies a task.
//!
//! S3 throttles per partitioned prefix and the bucket's own application shares that capacity, so
//! the backup keeps one rate controller per prefix rather than one per client (the AWS SDK's
//! adaptive retry mode keys its limiter per client, which lets one hot prefix slow every other
//! prefix a client touches, and lets a thousand clients cut a thousand times for one congestion
//! event).
//!
//! The controller follows the shape of smithy-rs `ClientRateLimiter` (CUBIC, β = 0.7): a
//! multiplicative cut when S3 answers `503 SlowDown`, then a cubic recovery curve that is concave
//! up to the rate at which the last throttle happened and convex beyond it, so the fleet probes
//! gently near the known limit and quickly when the limit has moved (a partition split, the
//! application's diurnal trough). Two things differ from the SDK:
//!
//! - The curve is scale-free: the operator sets how long the recovery takes (`recovery_s`) rather
//!   than a constant in requests per second cubed, so a prefix at 50 requests per second and one
//!   at 20,000 recover over the same time.
//! - Throttles that arrive within `cut_hold_ms` of the last cut belong to the same congestion
//!   event and do not cut again; the fleet reacts with a delay (reports, cache), and cutting once
//!   per report would collapse the rate to its floor.
//!
//! The whole fleet shares one [`PrefixState`] per prefix through the control table. It is a plain
//! serde record with a `version` for conditional writes, and [`PrefixState::merge`] is a
//! deterministic join (commutative, associative, idempotent), so a worker whose conditional write
//! lost a race merges the stored copy into its own and tries again without double-counting.
//!
//! Admission: the prefix's allowed rate is divided into claims, one per admitted worker, in order
//! of grant. A worker is admitted while the claims before it leave it a useful slice of the rate;
//! otherwise it defers the task (a visibility delay) and takes another, so workers move to
//! prefixes with headroom. After a cut, the most recently granted claims no longer fit, and those
//! workers yield at their next report.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (or any origin shared by the fleet), the controller's clock.
pub type Millis = u64;

/// What an operator configures for the per-prefix controller.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControllerConfig {
    /// The operator's ceiling in requests per second per prefix (application and backup together).
    pub ceiling_rps: f64,
    /// The share of the ceiling that the backup may use, in (0, 1].
    pub backup_share: f64,
    /// The rate the fleet starts at on a prefix it has never seen throttled.
    pub initial_rps: f64,
    /// The rate never goes below this, so a throttled prefix is still probed.
    pub min_rps: f64,
    /// Multiplicative decrease on a throttle (the SDK's BETA, 0.7).
    pub beta: f64,
    /// Seconds the recovery curve takes to climb back to the rate of the last throttle.
    pub recovery_s: f64,
    /// Throttles within this many milliseconds of the last cut are the same congestion event.
    pub cut_hold_ms: u64,
    /// How long a claim stays valid without being renewed by its worker's reports.
    pub lease_ms: u64,
    /// The smallest slice of its wanted rate, as a fraction, that is worth admitting a worker for.
    pub min_slice: f64,
    /// The shortest deferral of a task that cannot run now.
    pub min_defer_ms: u64,
    /// The longest deferral of a task that cannot run now.
    pub max_defer_ms: u64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            // S3 guarantees at least 5,500 GET/HEAD per second per partitioned prefix.
            ceiling_rps: 5_500.0,
            backup_share: 0.8,
            initial_rps: 1_000.0,
            min_rps: 5.0,
            beta: 0.7,
            recovery_s: 60.0,
            cut_hold_ms: 2_000,
            lease_ms: 60_000,
            min_slice: 0.25,
            min_defer_ms: 5_000,
            max_defer_ms: 300_000,
        }
    }
}

impl ControllerConfig {
    /// Checks that every field is in range, naming the first field that is not.
    pub fn validate(&self) -> crate::Result<()> {
        let positive = [
            ("ceiling_rps", self.ceiling_rps),
            ("initial_rps", self.initial_rps),
            ("min_rps", self.min_rps),
            ("recovery_s", self.recovery_s),
        ];
        for (name, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(crate::Error::Invalid(format!("scheduler config: {name} must be a positive number, got {value}")));
            }
        }
        let fractions = [("backup_share", self.backup_share), ("min_slice", self.min_slice)];
        for (name, value) in fractions {
            if !(value > 0.0 && value <= 1.0) {
                return Err(crate::Error::Invalid(format!("scheduler config: {name} must be in (0, 1], got {value}")));
            }
        }
        if !(self.beta > 0.0 && self.beta < 1.0) {
            return Err(crate::Error::Invalid(format!("scheduler config: beta must be in (0, 1), got {}", self.beta)));
        }
        if self.min_rps > self.cap_rps() {
            return Err(crate::Error::Invalid(format!(
                "scheduler config: min_rps ({}) is above ceiling_rps x backup_share ({})",
                self.min_rps,
                self.cap_rps()
            )));
        }
        if self.min_defer_ms > self.max_defer_ms {
            return Err(crate::Error::Invalid(format!(
                "scheduler config: min_defer_ms ({}) is above max_defer_ms ({})",
                self.min_defer_ms, self.max_defer_ms
            )));
        }
        if self.lease_ms == 0 {
            return Err(crate::Error::Invalid("scheduler config: lease_ms must be positive".into()));
        }
        Ok(())
    }

    /// The most the backup may send to one prefix: the ceiling times the backup's share.
    pub fn cap_rps(&self) -> f64 {
        self.ceiling_rps * self.backup_share
    }
}

/// The start of the current recovery curve: when the last cut happened and from which rate.
///
/// The curve is `w(t) = w_max · (1 + (1 − β) · ((t − K) / K)³)` with `K = recovery_s`, which is
/// `β · w_max` at the cut, `w_max` after `K` seconds, and grows without bound after that (the
/// operator's cap bounds it).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Epoch {
    /// When the curve started (the cut, or the first sight of the prefix).
    pub at_ms: Millis,
    /// The rate the curve returns to after `recovery_s`: the rate at which the throttle happened.
    pub w_max: f64,
}

impl Epoch {
    /// True when `self` should replace `other` in a merge: the newer cut wins, and of two cuts at
    /// the same instant the lower rate wins, because it is the more cautious reading.
    fn supersedes(&self, other: &Epoch) -> bool {
        match self.at_ms.cmp(&other.at_ms) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => self.w_max.total_cmp(&other.w_max).is_lt(),
        }
    }
}

/// One worker's share of a prefix's rate, renewed by its reports and ordered by grant time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// Requests per second this worker may send to the prefix; zero once released.
    pub rate: f64,
    /// When the claim was first granted; earlier claims keep their slice when the rate falls.
    pub granted_ms: Millis,
    /// When the claim lapses unless renewed.
    pub expires_ms: Millis,
    /// The owner's change counter: only the owner writes its claim, so the higher `seq` is newer.
    pub seq: u64,
}

impl Claim {
    fn live(&self, now: Millis) -> bool {
        self.rate > 0.0 && self.expires_ms > now
    }

    /// The deterministic order of two versions of the same worker's claim: newest owner write first.
    fn supersedes(&self, other: &Claim) -> bool {
        (self.seq, self.expires_ms, self.granted_ms)
            .cmp(&(other.seq, other.expires_ms, other.granted_ms))
            .then(self.rate.total_cmp(&other.rate))
            .is_gt()
    }
}

/// What a worker saw on a prefix since its last report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Requests that succeeded.
    pub successes: u64,
    /// Requests that S3 answered with `503 SlowDown`.
    pub throttles: u64,
}

/// The scheduler's answer to "may I work on this prefix now?".
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Admission {
    /// Run, sending at most `rate_rps` requests per second to the prefix.
    Go {
        /// The pace this worker must keep on the prefix.
        rate_rps: f64,
    },
    /// Put the task back (visibility timeout) for this long and take another.
    Defer(Duration),
}

/// The fleet-shared state of one prefix, stored as one item in the control table.
///
/// Writers read it, change it, call [`PrefixState::bump`] and write it back with the condition
/// `version = <the version they read>`; on a failed condition they read the stored copy, merge it
/// into theirs with [`PrefixState::merge`], and try again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrefixState {
    /// The prefix this state throttles.
    pub prefix: String,
    /// Incremented on every write; the condition of the conditional write.
    pub version: u64,
    /// The current recovery curve.
    pub epoch: Epoch,
    /// Claims by worker id.
    pub claims: BTreeMap<String, Claim>,
}

impl PrefixState {
    /// A prefix first seen at `now`: its curve starts at `initial_rps`, as if a cut had just
    /// happened from `initial_rps / β`, so the first minutes ramp gradually as AWS advises.
    pub fn new(prefix: impl Into<String>, config: &ControllerConfig, now: Millis) -> Self {
        PrefixState {
            prefix: prefix.into(),
            version: 0,
            epoch: Epoch { at_ms: now, w_max: config.initial_rps / config.beta },
            claims: BTreeMap::new(),
        }
    }

    /// The rate the whole fleet may send to this prefix at `now`.
    #[inline]
    pub fn allowed_rps(&self, config: &ControllerConfig, now: Millis) -> f64 {
        curve(config, &self.epoch, now).clamp(config.min_rps, config.cap_rps())
    }

    /// The sum of live claims: the rate the fleet is sending, since workers pace to their claims.
    #[inline]
    pub fn claimed_rps(&self, now: Millis) -> f64 {
        self.claims.values().filter(|c| c.live(now)).map(|c| c.rate).sum()
    }

    /// Records what a worker (or several, already summed) saw. Returns true when it cut the rate.
    ///
    /// A throttle cuts the rate to β times the lower of the allowed and the claimed rate (the SDK
    /// does the same with its measured rate), unless the last cut is younger than `cut_hold_ms`.
    #[inline]
    pub fn record(&mut self, config: &ControllerConfig, now: Millis, observation: Observation) -> bool {
        if observation.throttles == 0 {
            return false;
        }
        if now < self.epoch.at_ms.saturating_add(config.cut_hold_ms) {
            return false;
        }
        let allowed = self.allowed_rps(config, now);
        let claimed = self.claimed_rps(now);
        let sending = if claimed > 0.0 { allowed.min(claimed) } else { allowed };
        self.epoch = Epoch { at_ms: now, w_max: sending.max(config.min_rps / config.beta) };
        true
    }

    /// Decides whether `worker`, wanting `want_rps`, may work on this prefix now, and records the
    /// claim (granted, renewed, shrunk or released) in the state.
    ///
    /// A worker that already holds a claim keeps its place in the grant order, so calling this on
    /// every report both renews the claim and tells the worker to yield once a cut leaves no room
    /// for it.
    #[inline]
    pub fn admit(&mut self, config: &ControllerConfig, worker: &str, want_rps: f64, now: Millis) -> Admission {
        let (granted_ms, ahead) = self.ahead_of(worker, now);
        let seq = self.claims.get(worker).map_or(0, |c| c.seq) + 1;
        let rate = self.slice(config, ahead, want_rps, now);
        if rate > 0.0 {
            let expires_ms = now.saturating_add(config.lease_ms);
            self.claims.insert(worker.to_string(), Claim { rate, granted_ms, expires_ms, seq });
            Admission::Go { rate_rps: rate }
        } else {
            if self.claims.contains_key(worker) {
                self.claims.insert(worker.to_string(), Claim { rate: 0.0, granted_ms, expires_ms: now, seq });
            }
            Admission::Defer(self.time_until(config, ahead + config.min_slice * want_rps, now))
        }
    }

    /// Extends `worker`'s live claim by a lease without re-deciding it; false when it has none.
    ///
    /// Between two cuts the allowed rate only grows and no claim can be granted ahead of an
    /// existing one, so a full claim granted since the last cut stays valid: a worker whose
    /// claim is full and that saw no new cut may renew instead of calling [`PrefixState::admit`].
    #[inline]
    pub fn renew(&mut self, config: &ControllerConfig, worker: &str, now: Millis) -> bool {
        match self.claims.get_mut(worker) {
            Some(claim) if claim.live(now) => {
                claim.expires_ms = now.saturating_add(config.lease_ms);
                claim.seq += 1;
                true
            }
            _ => false,
        }
    }

    /// The rate `worker` would be granted now, without changing anything; zero when it would be
    /// deferred.
    ///
    /// Claims granted before the worker's own (ties broken by worker id) keep their slices; the
    /// worker gets what they leave, if that is at least `min_slice` of what it wants, or anything
    /// at all when nobody is ahead of it, so that a throttled prefix is still probed.
    #[inline]
    pub fn room(&self, config: &ControllerConfig, worker: &str, want_rps: f64, now: Millis) -> f64 {
        let (_, ahead) = self.ahead_of(worker, now);
        self.slice(config, ahead, want_rps, now)
    }

    /// The slice left after `ahead` is served, or zero when it is too small to be worth taking.
    #[inline]
    fn slice(&self, config: &ControllerConfig, ahead: f64, want_rps: f64, now: Millis) -> f64 {
        let room = self.allowed_rps(config, now) - ahead;
        if room >= config.min_slice * want_rps || (ahead <= 0.0 && room > 0.0) {
            want_rps.min(room)
        } else {
            0.0
        }
    }

    /// When `worker`'s live claim was granted (now, if it has none) and the rate claimed before it.
    #[inline]
    fn ahead_of(&self, worker: &str, now: Millis) -> (Millis, f64) {
        let granted_ms = self.claims.get(worker).filter(|c| c.live(now)).map_or(now, |c| c.granted_ms);
        // Grant times order the claims; worker ids only break ties, so strings are compared
        // rarely (and the worker's own claim is never ahead of itself).
        let ahead = self
            .claims
            .iter()
            .filter(|(id, c)| c.live(now) && (c.granted_ms < granted_ms || (c.granted_ms == granted_ms && id.as_str() < worker)))
            .map(|(_, c)| c.rate)
            .sum();
        (granted_ms, ahead)
    }

    /// Releases `worker`'s claim (its task finished or yielded), so others may take its slice.
    #[inline]
    pub fn release(&mut self, worker: &str, now: Millis) {
        if let Some(claim) = self.claims.get_mut(worker) {
            claim.rate = 0.0;
            claim.expires_ms = now;
            claim.seq += 1;
        }
    }

    /// Drops claims that lapsed more than a lease ago, so the item stays small.
    #[inline]
    pub fn prune(&mut self, config: &ControllerConfig, now: Millis) {
        self.claims.retain(|_, c| c.expires_ms.saturating_add(config.lease_ms) > now);
    }

    /// Marks a new write: call before a conditional write whose condition is the old version.
    pub fn bump(&mut self) {
        self.version += 1;
    }

    /// Joins another copy of the same prefix's state into this one.
    ///
    /// The join is deterministic and order-free: the newer cut wins (the lower rate on a tie),
    /// each worker's claim is the one its owner wrote last, and the version is the larger one.
    /// Merging copies of different prefixes is refused.
    pub fn merge(&mut self, other: &PrefixState) -> crate::Result<()> {
        if self.prefix != other.prefix {
            return Err(crate::Error::Invalid(format!(
                "cannot merge scheduler state of prefix {:?} into prefix {:?}",
                other.prefix, self.prefix
            )));
        }
        self.version = self.version.max(other.version);
        if other.epoch.supersedes(&self.epoch) {
            self.epoch = other.epoch;
        }
        for (worker, theirs) in &other.claims {
            match self.claims.get(worker) {
                Some(ours) if !theirs.supersedes(ours) => {}
                _ => {
                    self.claims.insert(worker.clone(), *theirs);
                }
            }
        }
        Ok(())
    }

    /// How long until the curve allows `target` requests per second, clamped to the deferral bounds.
    #[inline]
    fn time_until(&self, config: &ControllerConfig, target: f64, now: Millis) -> Duration {
        let min = Duration::from_millis(config.min_defer_ms);
        let max = Duration::from_millis(config.max_defer_ms);
        if target > config.cap_rps() {
            return max;
        }
        let w_max = self.epoch.w_max;
        let k = config.recovery_s;
        let c = w_max * (1.0 - config.beta) / (k * k * k);
        // Invert w(t) = w_max + c (t - K)^3 for the moment the curve reaches the target.
        let t_reach = k + ((target - w_max) / c).cbrt();
        let elapsed = now.saturating_sub(self.epoch.at_ms) as f64 / 1000.0;
        let wait = (t_reach - elapsed).max(0.0);
        Duration::from_secs_f64(wait).clamp(min, max)
    }
}

/// The recovery curve's value at `now`, before the floor and the operator's cap are applied.
#[inline]
fn curve(config: &ControllerConfig, epoch: &Epoch, now: Millis) -> f64 {
    let t = now.saturating_sub(epoch.at_ms) as f64 / 1000.0;
    let x = (t - config.recovery_s) / config.recovery_s;
    epoch.w_max * (1.0 + (1.0 - config.beta) * x * x * x)
}

/// A task a worker has been handed and could run: its prefix's state, and how many objects of
/// the run are still queued under that prefix (from the run's counters in the control table).
#[derive(Clone, Copy, Debug)]
pub struct Offer<'a> {
    /// The prefix's shared state.
    pub state: &'a PrefixState,
    /// Objects of the run still queued under the prefix.
    pub remaining: f64,
}

/// What a worker does with the tasks it was handed at once (an SQS batch).
#[derive(Clone, Debug, PartialEq)]
pub struct Choice {
    /// The offer to run, if any prefix among them has room for the worker.
    pub run: Option<usize>,
    /// The offers whose prefix has no room, with how long to defer each (its visibility
    /// timeout). Offers in neither list go straight back to the queue.
    pub defer: Vec<(usize, Duration)>,
}

/// Decides which of the tasks a worker was handed to run, and which to defer.
///
/// Among prefixes with room, the one whose queued objects would take longest to drain at its
/// allowed rate goes first: the prefix that will finish last sets the makespan, so it should never
/// wait for workers while shorter prefixes take them. Ties go to the earlier offer. Each distinct
/// prefix state is assessed once, however many offers share it.
#[inline]
pub fn choose(config: &ControllerConfig, offers: &[Offer<'_>], worker: &str, want_rps: f64, now: Millis) -> Choice {
    let mut assessed: Vec<(&PrefixState, f64, Duration)> = Vec::new();
    let mut best: Option<(usize, f64)> = None;
    let mut defer = Vec::new();
    for (i, offer) in offers.iter().enumerate() {
        let (room, wait) = match assessed.iter().find(|(state, _, _)| std::ptr::eq(*state, offer.state)) {
            Some(&(_, room, wait)) => (room, wait),
            None => {
                let (_, ahead) = offer.state.ahead_of(worker, now);
                let room = offer.state.slice(config, ahead, want_rps, now);
                let wait =
                    if room > 0.0 { Duration::ZERO } else { offer.state.time_until(config, ahead + config.min_slice * want_rps, now) };
                assessed.push((offer.state, room, wait));
                (room, wait)
            }
        };
        if room <= 0.0 {
            defer.push((i, wait));
            continue;
        }
        let drain_s = offer.remaining / offer.state.allowed_rps(config, now);
        if best.is_none() || best.is_some_and(|(_, b)| drain_s > b) {
            best = Some((i, drain_s));
        }
    }
    Choice { run: best.map(|(i, _)| i), defer }
}

/// One worker's view of the scheduler: a cache of the prefixes it works on, the decisions it
/// makes from them, and the states it writes back to (and merges from) the control table.
#[derive(Clone, Debug)]
pub struct Scheduler {
    config: ControllerConfig,
    worker: String,
    want_rps: f64,
    prefixes: BTreeMap<String, PrefixState>,
}

impl Scheduler {
    /// A worker called `worker` that can send up to `want_rps` requests per second.
    pub fn new(config: ControllerConfig, worker: impl Into<String>, want_rps: f64) -> crate::Result<Self> {
        config.validate()?;
        if !(want_rps.is_finite() && want_rps > 0.0) {
            return Err(crate::Error::Invalid(format!("scheduler: a worker's wanted rate must be positive, got {want_rps}")));
        }
        Ok(Scheduler { config, worker: worker.into(), want_rps, prefixes: BTreeMap::new() })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    /// May this worker run a task of `prefix` now? Grants, renews or releases its claim.
    pub fn admit(&mut self, prefix: &str, now: Millis) -> Admission {
        let (config, worker, want) = (&self.config, self.worker.as_str(), self.want_rps);
        self.prefixes.entry(prefix.to_string()).or_insert_with(|| PrefixState::new(prefix, config, now)).admit(config, worker, want, now)
    }

    /// What to do with the tasks handed to this worker at once, given as (prefix, objects still
    /// queued under it); see [`choose`].
    pub fn choose(&mut self, offers: &[(&str, f64)], now: Millis) -> Choice {
        for (prefix, _) in offers {
            if !self.prefixes.contains_key(*prefix) {
                self.prefixes.insert(prefix.to_string(), PrefixState::new(*prefix, &self.config, now));
            }
        }
        let offers: Vec<Offer<'_>> =
            offers.iter().map(|(prefix, remaining)| Offer { state: &self.prefixes[*prefix], remaining: *remaining }).collect();
        choose(&self.config, &offers, &self.worker, self.want_rps, now)
    }

    /// Reports what this worker saw on `prefix` and answers whether it may go on (and how fast),
    /// or must checkpoint and yield the task.
    pub fn report(&mut self, prefix: &str, now: Millis, observation: Observation) -> Admission {
        let config = &self.config;
        let state = self.prefixes.entry(prefix.to_string()).or_insert_with(|| PrefixState::new(prefix, config, now));
        state.record(config, now, observation);
        state.admit(config, &self.worker, self.want_rps, now)
    }

    /// Gives back this worker's slice of `prefix` (its task ended).
    pub fn release(&mut self, prefix: &str, now: Millis) {
        if let Some(state) = self.prefixes.get_mut(prefix) {
            state.release(&self.worker, now);
        }
    }

    /// This worker's copy of `prefix`'s state, to write to the control table.
    pub fn state(&self, prefix: &str) -> Option<&PrefixState> {
        self.prefixes.get(prefix)
    }

    /// Merges a copy read from the control table (or another worker) into the cache.
    pub fn absorb(&mut self, remote: &PrefixState) -> crate::Result<()> {
        match self.prefixes.get_mut(&remote.prefix) {
            Some(local) => local.merge(remote),
            None => {
                self.prefixes.insert(remote.prefix.clone(), remote.clone());
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ControllerConfig {
        ControllerConfig {
            ceiling_rps: 10_000.0,
            backup_share: 0.5,
            initial_rps: 1_000.0,
            min_rps: 5.0,
            beta: 0.7,
            recovery_s: 60.0,
            cut_hold_ms: 2_000,
            lease_ms: 60_000,
            min_slice: 0.25,
            min_defer_ms: 5_000,
            max_defer_ms: 300_000,
        }
    }

    fn state_with_epoch(w_max: f64, at_ms: Millis) -> PrefixState {
        let mut s = PrefixState::new("p/", &config(), 0);
        s.epoch = Epoch { at_ms, w_max };
        s
    }

    fn throttled(n: u64) -> Observation {
        Observation { successes: 100, throttles: n }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-6 * b.abs().max(1.0)
    }

    #[test]
    fn decrease_is_multiplicative_once_per_congestion_event() {
        let floor_w_max = 5.0 / 0.7;
        // (last cut at, w_max, claimed by one worker, report at, throttles, cut expected, new w_max)
        let cases: &[(Millis, f64, f64, Millis, u64, bool, f64)] = &[
            // A throttle long after the last cut cuts from the allowed rate (the curve's value).
            (0, 2_000.0, 0.0, 60_000, 1, true, 2_000.0),
            // When the fleet sends less than it may, the cut starts from what it sends.
            (0, 2_000.0, 1_500.0, 60_000, 3, true, 1_500.0),
            // No throttle, no cut.
            (0, 2_000.0, 1_500.0, 60_000, 0, false, 2_000.0),
            // A throttle within cut_hold_ms of the last cut is the same event.
            (60_000, 2_000.0, 1_500.0, 61_000, 5, false, 2_000.0),
            // Just outside the hold it cuts again, from where the curve is 2 s after the last cut.
            (60_000, 2_000.0, 0.0, 62_000, 1, true, 2_000.0 * (1.0 - 0.3 * (58.0f64 / 60.0).powi(3))),
            // The rate never falls below min_rps, so w_max never falls below min_rps / beta.
            (0, 6.0, 0.0, 60_000, 1, true, floor_w_max),
            (100_000, 6.0, 0.0, 200_000, 1, true, floor_w_max),
        ];
        for (i, &(at, w_max, claimed, now, throttles, cut, expect_w_max)) in cases.iter().enumerate() {
            let mut s = state_with_epoch(w_max, at);
            if claimed > 0.0 {
                s.claims.insert("w".into(), Claim { rate: claimed, granted_ms: at, expires_ms: now + 1, seq: 1 });
            }
            let did = s.record(&config(), now, throttled(throttles));
            assert_eq!(did, cut, "case {i}: cut");
            assert!(close(s.epoch.w_max, expect_w_max), "case {i}: w_max {} != {}", s.epoch.w_max, expect_w_max);
            if cut {
                assert_eq!(s.epoch.at_ms, now, "case {i}: epoch time");
                // Right after a cut the allowed rate is beta times the rate the throttle happened at.
                let expect_rate = (0.7 * expect_w_max).max(config().min_rps);
                assert!(close(s.allowed_rps(&config(), now), expect_rate), "case {i}: cut rate");
            } else {
                assert_eq!(s.epoch.at_ms, at, "case {i}: epoch unchanged");
            }
        }
    }

    #[test]
    fn recovery_follows_the_cubic_curve() {
        // With w_max 4,000, beta 0.7 and K 60 s: w(t) = 4000 (1 + 0.3 ((t - 60)/60)^3).
        let s = state_with_epoch(4_000.0, 0);
        let cases: &[(f64, f64)] = &[
            (0.0, 2_800.0),
            (15.0, 4_000.0 * (1.0 - 0.3 * 0.421_875)),
            (30.0, 4_000.0 * (1.0 - 0.3 * 0.125)),
            (60.0, 4_000.0),
            (90.0, 4_000.0 * (1.0 + 0.3 * 0.125)),
            // By 2K the curve passes the old maximum by (1 - beta) and the cap (5,000) takes over.
            (120.0, 5_000.0),
            (600.0, 5_000.0),
        ];
        let mut previous = 0.0;
        for &(t, expect) in cases {
            let got = s.allowed_rps(&config(), (t * 1000.0) as Millis);
            assert!(close(got, expect), "t = {t}: {got} != {expect}");
            assert!(got >= previous, "the curve never falls without a throttle");
            previous = got;
        }
        // Concave before K (slower and slower), convex after (faster and faster).
        let at = |t: f64| s.allowed_rps(&config(), (t * 1000.0) as Millis);
        assert!(at(10.0) - at(0.0) > at(50.0) - at(40.0));
        assert!(at(80.0) - at(70.0) > at(70.0) - at(60.0));
    }

    #[test]
    fn ceiling_and_share_bound_the_rate() {
        // (ceiling, share, w_max, seconds after the epoch, expected allowed rate)
        let cases: &[(f64, f64, f64, f64, f64)] = &[
            (10_000.0, 0.5, 4_000.0, 60.0, 4_000.0),
            (10_000.0, 0.3, 4_000.0, 60.0, 3_000.0),
            (5_500.0, 1.0, 4_000.0, 1_000.0, 5_500.0),
            (5_500.0, 0.1, 4_000.0, 0.0, 550.0),
            (20_000.0, 1.0, 1_000.0, 3_600.0, 20_000.0),
        ];
        for &(ceiling, share, w_max, t, expect) in cases {
            let cfg = ControllerConfig { ceiling_rps: ceiling, backup_share: share, ..config() };
            let mut s = PrefixState::new("p/", &cfg, 0);
            s.epoch = Epoch { at_ms: 0, w_max };
            let got = s.allowed_rps(&cfg, (t * 1000.0) as Millis);
            assert!(close(got, expect), "ceiling {ceiling} share {share}: {got} != {expect}");
        }
    }

    #[test]
    fn admission_fills_the_rate_in_grant_order_and_defers_the_rest() {
        let cfg = config();
        // At K the allowed rate is w_max = 1,000 requests per second; each worker wants 300.
        let mut s = state_with_epoch(1_000.0, 0);
        let now = 60_000;
        // The fourth fits a partial slice (100 is at least 25 % of 300); the fifth finds no room.
        let expect = [Some(300.0), Some(300.0), Some(300.0), Some(100.0), None];
        for (i, want) in expect.iter().enumerate() {
            let got = s.admit(&cfg, &format!("w{i}"), 300.0, now);
            match (got, want) {
                (Admission::Go { rate_rps }, Some(rate)) => {
                    assert!(close(rate_rps, *rate), "w{i}: {rate_rps}")
                }
                (Admission::Defer(d), None) => {
                    assert!(d >= Duration::from_millis(cfg.min_defer_ms) && d <= Duration::from_millis(cfg.max_defer_ms))
                }
                other => panic!("w{i}: unexpected {other:?}"),
            }
        }
        assert!(close(s.claimed_rps(now), 1_000.0));
        // A throttle cuts the rate to 0.7 x 1,000 = 700: the last-granted claims no longer fit.
        let later = now + 10_000;
        assert!(s.record(&cfg, later, throttled(1)));
        assert!(close(s.allowed_rps(&cfg, later), 700.0));
        let mut kept = Vec::new();
        for w in ["w0", "w1", "w2", "w3", "w4"] {
            if let Admission::Go { rate_rps } = s.admit(&cfg, w, 300.0, later) {
                kept.push((w, rate_rps));
            }
        }
        // The third-granted claim shrinks to what is left (100, at least the 75 slice) rather than yield.
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert_eq!(kept[0], ("w0", 300.0));
        assert_eq!(kept[1], ("w1", 300.0));
        assert_eq!(kept[2].0, "w2");
        assert!(close(kept[2].1, 100.0), "{kept:?}");
        assert!(close(s.claimed_rps(later), 700.0));
    }

    #[test]
    fn choose_takes_the_critical_path_among_prefixes_with_room() {
        let cfg = config();
        // (w_max at K = allowed rate, rate already claimed by others, objects queued)
        let prefixes: &[(f64, f64, f64)] = &[
            (4_000.0, 0.0, 1.0e6),     // 250 s to drain, room
            (1_000.0, 0.0, 1.0e6),     // 1,000 s to drain, room
            (2_000.0, 2_000.0, 9.0e6), // 4,500 s to drain, but full
            (500.0, 400.0, 6.0e5),     // 1,200 s to drain, 100 left: at least a quarter of 300
        ];
        let states: Vec<PrefixState> = prefixes
            .iter()
            .enumerate()
            .map(|(i, &(w_max, claimed, _))| {
                let mut s = PrefixState::new(format!("p{i}/"), &cfg, 0);
                s.epoch = Epoch { at_ms: 0, w_max };
                if claimed > 0.0 {
                    s.claims.insert("other".into(), Claim { rate: claimed, granted_ms: 0, expires_ms: 120_000, seq: 1 });
                }
                s
            })
            .collect();
        let offers =
            |idx: &[usize]| -> Vec<Offer<'_>> { idx.iter().map(|&i| Offer { state: &states[i], remaining: prefixes[i].2 }).collect() };
        // (offers in the batch, expected choice as an index into the batch, offers to defer)
        let cases: &[(&[usize], Option<usize>, &[usize])] = &[
            (&[0, 1, 2, 3], Some(3), &[2]),
            (&[0, 1, 2], Some(1), &[2]),
            (&[2, 0, 2], Some(1), &[0, 2]),
            (&[2], None, &[0]),
            (&[], None, &[]),
            (&[1, 1], Some(0), &[]),
        ];
        for (batch, run, defer) in cases {
            let choice = choose(&cfg, &offers(batch), "w", 300.0, 60_000);
            assert_eq!(choice.run, *run, "batch {batch:?}");
            let deferred: Vec<usize> = choice.defer.iter().map(|(i, _)| *i).collect();
            assert_eq!(&deferred, defer, "batch {batch:?}");
            // The full prefix must wait for its curve to make room: 2,000 + 75 on a curve at
            // w_max 2,000 at K, whose convex side passes 2,075 some seconds later.
            for (_, wait) in &choice.defer {
                let expected = 60.0 * ((75.0f64 / 600.0).cbrt());
                assert!((wait.as_secs_f64() - expected.max(5.0)).abs() < 0.01, "{wait:?}");
            }
        }
        // The worker's cache makes the same choice, creating states for prefixes it has not seen.
        let mut scheduler = Scheduler::new(cfg, "w", 300.0).unwrap();
        assert_eq!(scheduler.choose(&[("a/", 10.0), ("b/", 1.0e6)], 0).run, Some(1));
    }

    #[test]
    fn a_lone_worker_is_always_admitted_and_released_claims_free_the_rate() {
        let cfg = config();
        let mut s = state_with_epoch(6.0, 0);
        // The allowed rate is tiny, but with nobody ahead the worker still probes the prefix.
        assert!(matches!(s.admit(&cfg, "a", 300.0, 1_000), Admission::Go { .. }));
        assert!(matches!(s.admit(&cfg, "b", 300.0, 1_000), Admission::Defer(_)));
        s.release("a", 2_000);
        assert!(matches!(s.admit(&cfg, "b", 300.0, 2_000), Admission::Go { .. }));
        // Claims lapse when their worker stops renewing them.
        let mut t = state_with_epoch(1_000.0, 0);
        assert!(matches!(t.admit(&cfg, "a", 1_000.0, 60_000), Admission::Go { .. }));
        assert!(matches!(t.admit(&cfg, "b", 1_000.0, 61_000), Admission::Defer(_)));
        assert!(matches!(t.admit(&cfg, "b", 1_000.0, 60_000 + cfg.lease_ms + 1), Admission::Go { .. }));
    }

    #[test]
    fn renewal_extends_only_a_live_claim() {
        let cfg = config();
        let mut s = state_with_epoch(1_000.0, 0);
        assert!(!s.renew(&cfg, "a", 60_000), "no claim yet");
        assert!(matches!(s.admit(&cfg, "a", 300.0, 60_000), Admission::Go { .. }));
        assert!(s.renew(&cfg, "a", 100_000));
        assert_eq!(s.claims["a"].expires_ms, 100_000 + cfg.lease_ms);
        assert_eq!(s.claims["a"].seq, 2);
        // A lapsed claim cannot be renewed: the worker must be admitted again.
        assert!(!s.renew(&cfg, "a", 100_000 + cfg.lease_ms));
        s.release("a", 200_000);
        assert!(!s.renew(&cfg, "a", 200_001));
    }

    #[test]
    fn deferral_waits_for_the_curve() {
        let cfg = config();
        // Right after a cut from 1,000 the rate is 700; 700 more needs the curve to reach 1,400 + 75.
        let mut s = state_with_epoch(1_000.0, 0);
        assert!(matches!(s.admit(&cfg, "a", 700.0, 0), Admission::Go { .. }));
        let Admission::Defer(d) = s.admit(&cfg, "b", 300.0, 0) else { panic!("b must wait") };
        // w(t) = 775 needs ((t - 60)/60)^3 = (775/1000 - 1)/0.3 = -0.75, so t = 60 (1 - 0.9086) = 5.48 s,
        // which the minimum deferral of 5 s does not shorten.
        assert!((d.as_secs_f64() - 60.0 * (1.0 - 0.75f64.cbrt())).abs() < 0.01, "{d:?}");
        // A target above the operator's cap can never be met: wait the longest.
        let Admission::Defer(d) = s.admit(&cfg, "c", 20_000.0, 0) else { panic!("c must wait") };
        assert_eq!(d, Duration::from_millis(cfg.max_defer_ms));
    }

    /// Three workers start from the same stored copy, see parts of the same congestion, and write
    /// their copies concurrently.
    fn worker_copies() -> Vec<PrefixState> {
        let cfg = config();
        let base = {
            let mut s = PrefixState::new("tenants/acme/", &cfg, 0);
            s.epoch = Epoch { at_ms: 0, w_max: 3_000.0 };
            s.version = 7;
            for w in ["a", "b", "c"] {
                s.admit(&cfg, w, 500.0, 60_000);
            }
            s
        };
        let mut a = base.clone();
        assert!(a.record(&cfg, 70_000, throttled(2)));
        a.admit(&cfg, "a", 500.0, 70_000);
        a.bump();
        let mut b = base.clone();
        assert!(b.record(&cfg, 70_500, throttled(9)));
        b.bump();
        let mut c = base.clone();
        c.release("c", 65_000);
        c.bump();
        c.bump();
        vec![a, b, c]
    }

    fn merged(order: &[usize]) -> PrefixState {
        let copies = worker_copies();
        let mut acc = copies[order[0]].clone();
        for &i in &order[1..] {
            acc.merge(&copies[i]).unwrap();
        }
        acc
    }

    #[test]
    fn merge_of_several_workers_is_order_free_and_idempotent() {
        let orders: &[&[usize]] = &[&[0, 1, 2], &[0, 2, 1], &[1, 0, 2], &[1, 2, 0], &[2, 0, 1], &[2, 1, 0]];
        let first = merged(orders[0]);
        for order in orders {
            assert_eq!(merged(order), first, "order {order:?}");
        }
        // Merging a copy again, or merging with itself, changes nothing.
        let mut again = first.clone();
        again.merge(&worker_copies()[1]).unwrap();
        again.merge(&first).unwrap();
        assert_eq!(again, first);
        // The newest cut wins: b's at 70.5 s, from the 1,500 the fleet was sending. Both cuts
        // were of the same event, so the merged state is cut once (to 1,050), not twice (735).
        assert_eq!(first.epoch, Epoch { at_ms: 70_500, w_max: 1_500.0 });
        assert!(close(first.allowed_rps(&config(), 70_500), 1_050.0));
        // Each worker's claim is the one its owner wrote last: a renewed, c released.
        assert_eq!(first.claims.len(), 3);
        assert_eq!(first.claims["a"].seq, 2);
        assert_eq!(first.claims["a"].expires_ms, 70_000 + config().lease_ms);
        assert_eq!(first.claims["c"].rate, 0.0);
        assert_eq!(first.claims["b"].rate, 500.0);
        // The version is the highest seen, so the next conditional write bumps past every copy.
        assert_eq!(first.version, 9);
    }

    #[test]
    fn merge_of_simultaneous_cuts_keeps_the_lower_rate_and_refuses_other_prefixes() {
        let mut a = state_with_epoch(3_000.0, 10_000);
        let b = state_with_epoch(2_500.0, 10_000);
        let mut b2 = b.clone();
        b2.merge(&a).unwrap();
        a.merge(&b).unwrap();
        assert_eq!(a, b2);
        assert_eq!(a.epoch.w_max, 2_500.0);
        let other = PrefixState::new("q/", &config(), 0);
        assert!(a.merge(&other).is_err());
    }

    #[test]
    fn scheduler_reports_yield_after_a_cut_and_state_round_trips() {
        let cfg = config();
        let mut first = Scheduler::new(cfg.clone(), "w1", 600.0).unwrap();
        let mut second = Scheduler::new(cfg.clone(), "w2", 600.0).unwrap();
        // Both start with the initial 1,000 requests per second: one gets 600, the other 400.
        assert_eq!(first.admit("p/", 0), Admission::Go { rate_rps: 600.0 });
        second.absorb(first.state("p/").unwrap()).unwrap();
        let allowed_at_1s = 1_000.0 / 0.7 * (1.0 - 0.3 * (59.0f64 / 60.0).powi(3));
        match second.admit("p/", 1_000) {
            Admission::Go { rate_rps } => {
                assert!(close(rate_rps, allowed_at_1s - 600.0), "{rate_rps}")
            }
            other => panic!("second: {other:?}"),
        }
        first.absorb(second.state("p/").unwrap()).unwrap();
        // A throttle reported by the first worker cuts to 0.7 x the claimed rate; the second,
        // granted later, must yield when it merges that state and reports.
        let cut_at = 30_000;
        assert!(matches!(first.report("p/", cut_at, throttled(4)), Admission::Go { .. }));
        second.absorb(first.state("p/").unwrap()).unwrap();
        assert!(matches!(second.report("p/", cut_at + 500, Observation::default()), Admission::Defer(_)));
        // The state is a plain serde record.
        let json = serde_json::to_string(first.state("p/").unwrap()).unwrap();
        let back: PrefixState = serde_json::from_str(&json).unwrap();
        let original = first.state("p/").unwrap();
        // JSON numbers may lose the last bit of a float, so rates compare within a tolerance.
        assert_eq!((&back.prefix, back.version, back.epoch.at_ms), (&original.prefix, original.version, original.epoch.at_ms));
        assert!(close(back.epoch.w_max, original.epoch.w_max));
        assert_eq!(back.claims.keys().collect::<Vec<_>>(), original.claims.keys().collect::<Vec<_>>());
        for (theirs, ours) in back.claims.values().zip(original.claims.values()) {
            assert_eq!((theirs.granted_ms, theirs.expires_ms, theirs.seq), (ours.granted_ms, ours.expires_ms, ours.seq));
            assert!(close(theirs.rate, ours.rate));
        }
    }

    #[test]
    fn invalid_configs_name_the_field() {
        let cases: &[(ControllerConfig, &str)] = &[
            (ControllerConfig { beta: 1.0, ..config() }, "beta"),
            (ControllerConfig { backup_share: 0.0, ..config() }, "backup_share"),
            (ControllerConfig { ceiling_rps: -1.0, ..config() }, "ceiling_rps"),
            (ControllerConfig { recovery_s: f64::NAN, ..config() }, "recovery_s"),
            (ControllerConfig { min_rps: 9_000.0, ..config() }, "min_rps"),
            (ControllerConfig { min_defer_ms: 10, max_defer_ms: 5, ..config() }, "min_defer_ms"),
        ];
        for (cfg, field) in cases {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
            assert!(!cfg.validate().unwrap_err().is_transient());
        }
        assert!(config().validate().is_ok());
        assert!(Scheduler::new(config(), "w", 0.0).is_err());
    }
}
