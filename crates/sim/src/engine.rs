//! The time-stepped simulation of one policy: workers, tasks, S3's partitions and the application, advanced together step by step.
//!
//! Rates, not requests: in each step every worker decides how many requests per second it
//! sends to its prefix, S3 compares each prefix's offered load (application plus backup) with its
//! capacity and answers the excess with 503s in proportion to each side's share, and then every
//! worker advances its task by what succeeded. Tasks are drawn from the queue at random in
//! proportion to the objects left in each prefix, as the seeder interleaves them.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use tidemark_core::scheduler::{choose, Admission, Observation, Offer, PrefixState};

use crate::policy::{go_v1_throttle_delays, retry_mix, smithy_standard_delays, Policy, SdkLimiter, Sleepers};
use crate::world::World;

/// One point of a run's time series, averaged over the sample interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the start, at the end of the interval.
    pub t_s: f64,
    /// Objects copied per second.
    pub objects_per_s: f64,
    /// Requests per second the backup sent to the source.
    pub backup_rps: f64,
    /// Workers holding a task.
    pub busy_workers: f64,
    /// The application's requests per second, all prefixes together.
    pub app_rps: f64,
    /// The application's 503s per second, per plotted prefix, then all other prefixes together.
    pub app_503_per_s: Vec<f64>,
    /// The backup's 503s per second, per plotted prefix, then all other prefixes together.
    pub backup_503_per_s: Vec<f64>,
}

/// What one policy's run produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) finished: bool,
    pub(crate) makespan_s: f64,
    pub(crate) app_requests: f64,
    pub(crate) app_503: f64,
    pub(crate) worst_prefix_app_503_share: f64,
    pub(crate) backup_attempts: f64,
    pub(crate) backup_503: f64,
    pub(crate) failed_requests: f64,
    pub(crate) objects_done: f64,
    pub(crate) worker_seconds: f64,
    pub(crate) invocations: f64,
    pub(crate) deferrals: f64,
    pub(crate) yields: f64,
    pub(crate) cuts: f64,
    pub(crate) sqs_requests: f64,
    pub(crate) ddb_writes: f64,
    pub(crate) ddb_reads: f64,
    pub(crate) splits: u64,
    pub(crate) samples: Vec<Sample>,
}

/// A worker: one Lambda execution environment, reused across invocations.
#[derive(Clone, Debug, Default)]
struct Worker {
    started: bool,
    has_task: bool,
    prefix: usize,
    task_left: f64,
    invocation_left_s: f64,
    /// Seconds of overhead (cold start, task hand-over) still to pay before it can send.
    busy_s: f64,
    /// No task could be admitted; try again at this time.
    retry_draw_at: f64,
    /// tidemark: the pace its claim allows.
    pace_rps: f64,
    /// tidemark: when it next reports and renews its claim.
    next_renew_s: f64,
    /// fixed, sdk-adaptive: slots asleep in retry back-off.
    sleeping: f64,
}

/// A deferred task, invisible in the queue until its visibility timeout ends.
#[derive(Clone, Copy, Debug)]
struct Deferred {
    visible_at_ms: u64,
    prefix: usize,
    objects: f64,
}

impl PartialEq for Deferred {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Deferred {}

impl PartialOrd for Deferred {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Deferred {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.visible_at_ms, self.prefix).cmp(&(other.visible_at_ms, other.prefix)).then(self.objects.total_cmp(&other.objects))
    }
}

/// How many tasks a worker draws before it gives up for this step (an SQS batch holds ten).
const MAX_DRAWS: usize = 10;

struct Sim<'a> {
    world: &'a World,
    policy: Policy,
    dt: f64,
    slots: f64,
    latency: f64,
    want_rps: f64,
    /// Objects not yet handed to a worker, per prefix: visible in the queue plus deferred.
    pool: Vec<f64>,
    pool_total: f64,
    /// Of the pool, the objects whose tasks are visible in the queue now.
    visible: Vec<f64>,
    visible_total: f64,
    visible_index: Fenwick,
    /// Deferred tasks and when their visibility timeout ends.
    hidden: BinaryHeap<Reverse<Deferred>>,
    done_total: f64,
    partitions: Vec<u32>,
    busy_since: Vec<f64>,
    workers: Vec<Worker>,
    ids: Vec<String>,
    limiters: Vec<SdkLimiter>,
    controllers: Vec<PrefixState>,
    rng: crate::world::Rng,
    /// tidemark: the workers whose claims are re-checked this step (a buffer kept between steps).
    due: Vec<(usize, u64, usize)>,
    out: Outcome,
}

pub(crate) fn simulate(world: &World, policy: Policy) -> Outcome {
    let scenario = &world.scenario;
    let n_prefixes = world.prefixes.len();
    let n_workers = scenario.fleet.max_concurrency as usize;
    let controller = &scenario.policies.tidemark.controller;
    let mut sim = Sim {
        world,
        policy,
        dt: scenario.time.step_s,
        slots: f64::from(scenario.fleet.requests_in_flight),
        latency: scenario.fleet.request_latency_s,
        want_rps: world.worker_rps(),
        pool: world.prefixes.iter().map(|p| p.objects).collect(),
        pool_total: world.total_objects,
        visible: world.prefixes.iter().map(|p| p.objects).collect(),
        visible_total: world.total_objects,
        visible_index: Fenwick::new(&world.prefixes.iter().map(|p| p.objects).collect::<Vec<_>>()),
        hidden: BinaryHeap::new(),
        done_total: 0.0,
        partitions: vec![scenario.s3.initial_partitions; n_prefixes],
        busy_since: vec![0.0; n_prefixes],
        workers: vec![Worker::default(); n_workers],
        ids: (0..n_workers).map(|i| format!("worker-{i:04}")).collect(),
        limiters: if policy == Policy::SdkAdaptive { vec![SdkLimiter::default(); n_workers] } else { Vec::new() },
        controllers: if policy == Policy::Tidemark {
            world.prefixes.iter().map(|p| PrefixState::new(p.name.clone(), controller, 0)).collect()
        } else {
            Vec::new()
        },
        rng: crate::world::Rng::new(world.seed ^ policy.salt()),
        due: Vec::new(),
        out: Outcome::default(),
    };
    sim.run();
    sim.out
}

impl Sim<'_> {
    fn run(&mut self) {
        let world = self.world;
        let scenario = &world.scenario;
        let n = world.prefixes.len();
        let dt = self.dt;
        let total = world.total_objects;
        let plotted = world.plotted.len();
        let sample_every = (scenario.time.sample_s / dt).round().max(1.0) as u64;
        let mut offered = vec![0.0f64; n];
        let mut q = vec![0.0f64; n];
        let mut sleepers = vec![Sleepers::new(0.0, 0.0, 0.0, dt); n];
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut final_share = vec![0.0f64; n];
        let mut successes = vec![0.0f64; n];
        let mut throttled = vec![0.0f64; n];
        let mut app_requests = vec![0.0f64; n];
        let mut app_503 = vec![0.0f64; n];
        let mut cut = vec![false; n];
        let mut app = vec![0.0f64; n];
        let mut sample = SampleAcc::new(plotted);
        let delays = match self.policy {
            Policy::Fixed => {
                let f = &scenario.policies.fixed;
                go_v1_throttle_delays(f.max_retries, f.min_throttle_delay_s, f.max_delay_s)
            }
            Policy::SdkAdaptive => {
                let s = &scenario.policies.sdk_adaptive;
                smithy_standard_delays(s.max_attempts, s.initial_backoff_s, s.max_backoff_s)
            }
            Policy::Tidemark => Vec::new(),
        };
        let slot_of = |p: usize| if p < plotted { p } else { plotted };
        let mut next_prune_s = 60.0;
        for step in 0..world.max_steps() {
            let t = step as f64 * dt;
            let now_ms = (t * 1000.0).round() as u64;
            // Deferred tasks whose visibility timeout has ended are in the queue again.
            while let Some(Reverse(d)) = self.hidden.peek() {
                if d.visible_at_ms > now_ms {
                    break;
                }
                let d = self.hidden.pop().expect("peeked").0;
                self.show(d.prefix, d.objects);
            }
            // The event source adds concurrency while there are messages to deliver.
            let concurrency = world.concurrency(t);
            for w in 0..concurrency {
                if !self.workers[w].started && self.pool_total > 0.5 {
                    let worker = &mut self.workers[w];
                    worker.started = true;
                    worker.busy_s = scenario.fleet.cold_start_s;
                }
            }
            for w in 0..concurrency {
                let worker = &self.workers[w];
                if worker.started && !worker.has_task && worker.retry_draw_at <= t && self.visible_total > 0.5 {
                    self.draw(w, t, now_ms);
                }
            }
            // What each worker would send if S3 throttled nothing: tidemark's pace, or every
            // slot that is not asleep in back-off (and, for the SDK, what its limiter allows).
            let sleepers_idle = self.sleepers_at(0.0, &delays);
            offered.iter_mut().for_each(|o| *o = 0.0);
            for w in 0..concurrency {
                if self.workers[w].has_task {
                    let (sent, _, _) = self.send(w, 0.0, &sleepers_idle, t);
                    offered[self.workers[w].prefix] += sent / dt;
                }
            }
            let diurnal = world.diurnal(t);
            for (p, a) in app.iter_mut().enumerate() {
                *a = world.app_rps(p, step, diurnal);
            }
            for p in 0..n {
                q[p] = throttle_share(app[p], offered[p], world.capacity(self.partitions[p]));
            }
            // Retrying clients send less when throttled (slots sleep, limiters cut), and S3
            // throttles what is really sent: on each congested prefix the throttle rate is the
            // fixed point of the two. More throttling means less sent, so the map is monotone and
            // bisection finds it. Solving it within the step, rather than reacting a step late,
            // keeps the fluid from oscillating between all slots awake and all asleep.
            if self.policy != Policy::Tidemark {
                members.iter_mut().for_each(Vec::clear);
                for w in 0..concurrency {
                    let worker = &self.workers[w];
                    if worker.has_task && q[worker.prefix] > 0.0 {
                        members[worker.prefix].push(w);
                    }
                }
                for p in 0..n {
                    if members[p].is_empty() {
                        continue;
                    }
                    let capacity = world.capacity(self.partitions[p]);
                    let (mut low, mut high) = (0.0, q[p]);
                    for _ in 0..14 {
                        let mid = 0.5 * (low + high);
                        let sleepers = self.sleepers_at(mid, &delays);
                        let sent: f64 = members[p].iter().map(|&w| self.send(w, mid, &sleepers, t).0).sum();
                        if throttle_share(app[p], sent / dt, capacity) > mid {
                            low = mid;
                        } else {
                            high = mid;
                        }
                    }
                    q[p] = high;
                }
                for p in 0..n {
                    sleepers[p] = if q[p] > 0.0 { self.sleepers_at(q[p], &delays) } else { sleepers_idle };
                    final_share[p] = if q[p] > 0.0 { retry_mix(q[p], &delays).final_share } else { 0.0 };
                }
            }
            // Progress: every worker advances by what S3 accepted.
            successes.iter_mut().for_each(|s| *s = 0.0);
            throttled.iter_mut().for_each(|s| *s = 0.0);
            let mut step_done = 0.0;
            for w in 0..concurrency {
                if !self.workers[w].started {
                    continue;
                }
                let holds_invocation = self.workers[w].has_task || self.workers[w].busy_s > 0.0;
                if holds_invocation {
                    self.out.worker_seconds += dt;
                }
                self.workers[w].busy_s = (self.workers[w].busy_s - dt).max(0.0);
                if !self.workers[w].has_task {
                    continue;
                }
                let p = self.workers[w].prefix;
                let (sent, sleeping, limiter) = self.send(w, q[p], &sleepers[p], t);
                let worker = &mut self.workers[w];
                worker.sleeping = sleeping;
                if let Some(limiter) = limiter {
                    self.limiters[w] = limiter;
                }
                let ok = (sent * (1.0 - q[p])).min(worker.task_left);
                let bad = sent * q[p];
                worker.task_left -= ok;
                successes[p] += ok;
                throttled[p] += bad;
                step_done += ok;
                self.out.backup_attempts += sent;
                self.out.backup_503 += bad;
                self.out.failed_requests += bad * final_share[p];
                worker.invocation_left_s -= dt;
                if worker.task_left <= 1e-6 {
                    self.finish_task(w, now_ms, true, std::time::Duration::ZERO);
                    self.draw(w, t, now_ms);
                } else if worker.invocation_left_s <= 0.0 {
                    // The function timed out: the task's cursor was checkpointed, and it goes back
                    // to the queue for any worker to resume.
                    self.finish_task(w, now_ms, false, std::time::Duration::ZERO);
                    self.draw(w, t, now_ms);
                }
            }
            // S3's side of the step: who got 503s, and which prefixes split.
            for p in 0..n {
                let capacity = world.capacity(self.partitions[p]);
                let backup_rps = (successes[p] + throttled[p]) / dt;
                let load = app[p] + backup_rps;
                let app_throttled = app[p] * q[p] * dt;
                app_requests[p] += app[p] * dt;
                app_503[p] += app_throttled;
                let slot = slot_of(p);
                sample.app_503[slot] += app_throttled;
                sample.app_requests += app[p] * dt;
                sample.backup_503[slot] += throttled[p];
                sample.backup_requests += successes[p] + throttled[p];
                if load >= scenario.s3.split_utilization * capacity {
                    self.busy_since[p] += dt;
                    if self.busy_since[p] >= scenario.s3.split_after_s && self.partitions[p] < scenario.s3.max_partitions {
                        self.partitions[p] = (self.partitions[p] * 2).min(scenario.s3.max_partitions);
                        self.busy_since[p] = 0.0;
                        self.out.splits += 1;
                    }
                } else {
                    // Sustained load builds up and drains away gradually: a dip below the
                    // threshold undoes as much progress towards a split as it lasts.
                    self.busy_since[p] = (self.busy_since[p] - dt).max(0.0);
                }
            }
            // tidemark: the fleet's reports reach the shared state; a cut makes the last-granted
            // claims yield, and every worker renews its claim on its own schedule.
            if self.policy == Policy::Tidemark {
                self.tidemark_reports(&successes, &throttled, &mut cut, t, now_ms);
                if t >= next_prune_s {
                    let config = &scenario.policies.tidemark.controller;
                    self.controllers.iter_mut().for_each(|c| c.prune(config, now_ms));
                    next_prune_s += 60.0;
                }
            }
            // Bookkeeping.
            let before = self.done_total;
            self.done_total += step_done;
            sample.objects += step_done;
            sample.busy_workers += self.workers.iter().filter(|w| w.has_task).count() as f64;
            sample.steps += 1;
            let finished = self.done_total >= total - 0.5;
            if (step + 1) % sample_every == 0 || finished {
                self.out.samples.push(sample.take(t + dt, dt));
            }
            if finished {
                let fraction = if step_done > 0.0 { ((total - 0.5 - before) / step_done).clamp(0.0, 1.0) } else { 1.0 };
                self.out.finished = true;
                self.out.makespan_s = t + fraction * dt;
                break;
            }
            self.out.makespan_s = t + dt;
        }
        self.out.objects_done = self.done_total;
        self.out.app_requests = app_requests.iter().sum();
        self.out.app_503 = app_503.iter().sum();
        self.out.worst_prefix_app_503_share =
            app_503.iter().zip(&app_requests).map(|(bad, all)| if *all > 0.0 { bad / all } else { 0.0 }).fold(0.0, f64::max);
    }

    /// The coefficients of the back-off sleeper equation when a share `q` of requests is throttled.
    fn sleepers_at(&self, q: f64, delays: &[f64]) -> Sleepers {
        let mix = retry_mix(q, delays);
        Sleepers::new(self.slots, q / self.latency * (1.0 - mix.final_share), mix.mean_sleep_s, self.dt)
    }

    /// What worker `w` sends this step if a share `q` of its requests is throttled: the requests,
    /// its sleeping slots at the end of the step, and its SDK limiter afterwards. Changes nothing.
    fn send(&self, w: usize, q: f64, sleepers: &Sleepers, t: f64) -> (f64, f64, Option<SdkLimiter>) {
        let dt = self.dt;
        let worker = &self.workers[w];
        let available = ((dt - worker.busy_s) / dt).clamp(0.0, 1.0);
        match self.policy {
            Policy::Tidemark => (worker.pace_rps.min(self.want_rps) * available * dt, 0.0, None),
            Policy::Fixed => {
                let (mean, end) = sleepers.advance(worker.sleeping);
                ((self.slots - mean) / self.latency * available * dt, end, None)
            }
            Policy::SdkAdaptive => {
                let (mean, end) = sleepers.advance(worker.sleeping);
                let mut limiter = self.limiters[w];
                let sent = limiter.step((self.slots - mean) / self.latency * available, q, t, dt);
                (sent, end, Some(limiter))
            }
        }
    }

    /// Gives a worker a task. tidemark's workers receive a batch, run the task its scheduler
    /// chooses and defer the tasks of prefixes without room; the others run what they receive.
    fn draw(&mut self, w: usize, t: f64, now_ms: u64) {
        if self.policy == Policy::Tidemark {
            self.draw_tidemark(w, t, now_ms);
            return;
        }
        if self.visible_total <= 0.5 {
            return;
        }
        let p = self.pick_prefix();
        self.out.sqs_requests += 1.0;
        self.assign(w, p);
    }

    fn draw_tidemark(&mut self, w: usize, t: f64, now_ms: u64) {
        let world = self.world;
        let config = &world.scenario.policies.tidemark.controller;
        let fleet = &world.scenario.fleet;
        if self.visible_total <= 0.5 {
            return;
        }
        // One receive returns up to ten messages, each a task drawn at random from the queue.
        let batch: Vec<usize> = (0..MAX_DRAWS).map(|_| self.pick_prefix()).collect();
        self.out.sqs_requests += 1.0;
        self.out.ddb_reads += batch.len() as f64;
        let offers: Vec<Offer<'_>> = batch.iter().map(|&p| Offer { state: &self.controllers[p], remaining: self.pool[p] }).collect();
        let choice = choose(config, &offers, &self.ids[w], self.want_rps, now_ms);
        // Tasks of prefixes without room are deferred; the rest go straight back to the queue.
        self.out.sqs_requests += (batch.len() - 1) as f64;
        for (i, wait) in choice.defer {
            let p = batch[i];
            let objects = fleet.task_objects.min(self.visible[p]);
            if objects <= 0.0 {
                continue;
            }
            self.workers[w].busy_s += fleet.defer_overhead_s;
            self.out.deferrals += 1.0;
            self.show(p, -objects);
            self.hide(p, objects, now_ms, wait);
        }
        let Some(i) = choice.run else {
            // Nothing it was handed could run: it polls again in a second.
            self.workers[w].retry_draw_at = t + 1.0;
            self.out.invocations += 1.0;
            return;
        };
        let p = batch[i];
        self.out.ddb_writes += 1.0;
        match self.controllers[p].admit(config, &self.ids[w], self.want_rps, now_ms) {
            Admission::Go { rate_rps } => {
                self.workers[w].pace_rps = rate_rps;
                self.workers[w].next_renew_s = t + world.scenario.policies.tidemark.renew_s;
                self.assign(w, p);
            }
            Admission::Defer(_) => unreachable!("the chosen prefix had room"),
        }
    }

    /// Hands the next task of prefix `p` to worker `w`.
    fn assign(&mut self, w: usize, p: usize) {
        let fleet = &self.world.scenario.fleet;
        let objects = fleet.task_objects.min(self.visible[p]);
        self.show(p, -objects);
        self.pool[p] -= objects;
        self.pool_total -= objects;
        let worker = &mut self.workers[w];
        worker.has_task = true;
        worker.prefix = p;
        worker.task_left = objects;
        worker.invocation_left_s = fleet.invocation_timeout_s;
        worker.busy_s += fleet.task_overhead_s;
        self.out.invocations += 1.0;
    }

    /// Puts objects back in the queue, invisible for `wait`.
    fn hide(&mut self, p: usize, objects: f64, now_ms: u64, wait: std::time::Duration) {
        let visible_at_ms = now_ms + wait.as_millis() as u64;
        self.hidden.push(Reverse(Deferred { visible_at_ms, prefix: p, objects }));
    }

    /// A prefix at random, in proportion to the objects visible in the queue for it.
    fn pick_prefix(&mut self) -> usize {
        let target = self.rng.f64() * self.visible_total;
        let p = self.visible_index.find(target);
        if self.visible[p] > 0.0 {
            return p;
        }
        // Rounding in the index can land on an emptied prefix; the next one with tasks will do.
        (0..self.visible.len()).map(|i| (p + i) % self.visible.len()).find(|&i| self.visible[i] > 0.0).unwrap_or(p)
    }

    /// Adds objects to (or, negative, takes them from) what the queue shows for prefix `p`.
    fn show(&mut self, p: usize, objects: f64) {
        self.visible[p] += objects;
        self.visible_total += objects;
        self.visible_index.add(p, objects);
    }

    /// Ends a worker's task: done, or checkpointed and re-queued (visible again after `delay`).
    fn finish_task(&mut self, w: usize, now_ms: u64, done: bool, delay: std::time::Duration) {
        let fleet = &self.world.scenario.fleet;
        let worker = &mut self.workers[w];
        let p = worker.prefix;
        let left = worker.task_left;
        worker.has_task = false;
        worker.busy_s += fleet.task_overhead_s;
        worker.task_left = 0.0;
        self.out.sqs_requests += 1.0;
        self.out.ddb_writes += 1.0;
        if !done {
            self.pool[p] += left;
            self.pool_total += left;
            if delay.is_zero() {
                self.show(p, left);
            } else {
                self.hide(p, left, now_ms, delay);
            }
        }
        if self.policy == Policy::Tidemark {
            self.controllers[p].release(&self.ids[w], now_ms);
            self.out.ddb_writes += 1.0;
        }
    }

    fn tidemark_reports(&mut self, successes: &[f64], throttled: &[f64], cut: &mut [bool], t: f64, now_ms: u64) {
        let config = &self.world.scenario.policies.tidemark.controller;
        let renew_s = self.world.scenario.policies.tidemark.renew_s;
        for p in 0..cut.len() {
            let observation = Observation { successes: successes[p].round() as u64, throttles: self.rng.round(throttled[p]) };
            cut[p] = self.controllers[p].record(config, now_ms, observation);
            if cut[p] {
                self.out.cuts += 1.0;
                self.out.ddb_writes += 1.0;
            }
        }
        // Workers on a prefix that was cut re-check at once, in grant order, so that the earliest
        // claims keep their slices. The others renew when their report comes due: a full claim
        // with no cut since stays valid, a partial one asks again in case the rate has grown.
        let mut due = std::mem::take(&mut self.due);
        due.clear();
        for (w, worker) in self.workers.iter_mut().enumerate() {
            if !worker.has_task {
                continue;
            }
            let p = worker.prefix;
            if !cut[p] && worker.next_renew_s <= t && worker.pace_rps >= self.want_rps {
                worker.next_renew_s = t + renew_s;
                self.out.ddb_writes += 1.0;
                if self.controllers[p].renew(config, &self.ids[w], now_ms) {
                    continue;
                }
            }
            if cut[p] || worker.next_renew_s <= t {
                let granted = self.controllers[p].claims.get(&self.ids[w]).map_or(u64::MAX, |c| c.granted_ms);
                due.push((p, granted, w));
            }
        }
        due.sort_unstable();
        for &(p, _, w) in &due {
            self.out.ddb_reads += 1.0;
            self.out.ddb_writes += 1.0;
            match self.controllers[p].admit(config, &self.ids[w], self.want_rps, now_ms) {
                Admission::Go { rate_rps } => {
                    self.workers[w].pace_rps = rate_rps;
                    self.workers[w].next_renew_s = t + renew_s;
                }
                Admission::Defer(wait) => {
                    // No room left after the cut: checkpoint, put the task back, take another.
                    self.out.yields += 1.0;
                    self.out.sqs_requests += 1.0;
                    self.finish_task(w, now_ms, false, wait);
                    self.draw(w, t, now_ms);
                }
            }
        }
        self.due = due;
    }
}

/// Sums over one sample interval.
struct SampleAcc {
    steps: u64,
    objects: f64,
    app_requests: f64,
    backup_requests: f64,
    busy_workers: f64,
    app_503: Vec<f64>,
    backup_503: Vec<f64>,
}

impl SampleAcc {
    fn new(plotted: usize) -> SampleAcc {
        SampleAcc {
            steps: 0,
            objects: 0.0,
            app_requests: 0.0,
            backup_requests: 0.0,
            busy_workers: 0.0,
            app_503: vec![0.0; plotted + 1],
            backup_503: vec![0.0; plotted + 1],
        }
    }

    fn take(&mut self, t_s: f64, dt: f64) -> Sample {
        let seconds = self.steps.max(1) as f64 * dt;
        let sample = Sample {
            t_s,
            objects_per_s: self.objects / seconds,
            app_rps: self.app_requests / seconds,
            backup_rps: self.backup_requests / seconds,
            busy_workers: self.busy_workers / self.steps.max(1) as f64,
            app_503_per_s: self.app_503.iter().map(|v| v / seconds).collect(),
            backup_503_per_s: self.backup_503.iter().map(|v| v / seconds).collect(),
        };
        let plotted = self.app_503.len() - 1;
        *self = SampleAcc::new(plotted);
        sample
    }
}

/// A Fenwick tree over the objects visible per prefix, so that a task can be drawn in proportion
/// to them in logarithmic time (a draw per task, for a thousand workers, adds up).
#[derive(Clone, Debug)]
struct Fenwick {
    tree: Vec<f64>,
}

impl Fenwick {
    fn new(values: &[f64]) -> Fenwick {
        let mut fenwick = Fenwick { tree: vec![0.0; values.len() + 1] };
        for (i, &v) in values.iter().enumerate() {
            fenwick.add(i, v);
        }
        fenwick
    }

    fn add(&mut self, index: usize, delta: f64) {
        let mut i = index + 1;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    /// The index whose cumulative range holds `target`.
    fn find(&self, mut target: f64) -> usize {
        let n = self.tree.len() - 1;
        let mut pos = 0;
        let mut step = n.next_power_of_two();
        while step > 0 {
            let next = pos + step;
            if next <= n && self.tree[next] <= target {
                target -= self.tree[next];
                pos = next;
            }
            step >>= 1;
        }
        pos.min(n - 1)
    }
}

/// The share of requests S3 answers with 503 when `app + backup` requests per second meet `capacity`.
fn throttle_share(app: f64, backup: f64, capacity: f64) -> f64 {
    let load = app + backup;
    if load > capacity {
        (load - capacity) / load
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fenwick_draws_in_proportion_to_weights() {
        let mut index = Fenwick::new(&[5.0, 0.0, 3.0, 2.0]);
        // Cumulative ranges: [0, 5) -> 0, [5, 8) -> 2, [8, 10) -> 3; the empty prefix 1 is never drawn.
        let cases: &[(f64, usize)] = &[(0.0, 0), (4.99, 0), (5.0, 2), (7.5, 2), (8.0, 3), (9.99, 3)];
        for &(target, expect) in cases {
            assert_eq!(index.find(target), expect, "target {target}");
        }
        index.add(0, -5.0);
        index.add(1, 1.0);
        assert_eq!(index.find(0.5), 1);
        assert_eq!(index.find(1.0), 2);
    }

    #[test]
    fn throttle_share_is_the_excess_over_the_offered_load() {
        assert_eq!(throttle_share(3_000.0, 2_000.0, 5_500.0), 0.0);
        assert!((throttle_share(3_000.0, 3_000.0, 5_500.0) - 500.0 / 6_000.0).abs() < 1e-12);
        assert_eq!(throttle_share(0.0, 0.0, 5_500.0), 0.0);
    }
}
