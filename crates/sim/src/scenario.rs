//! Scenario files: the TOML description of a bucket, its application, S3's partitions, the Lambda fleet and the policies to compare.
//!
//! Every table denies unknown fields, so a misspelt key is an error that names it rather than a
//! silent default. Prices default to the us-east-1 list prices (aws.amazon.com/s3/pricing and
//! the Lambda, SQS and DynamoDB pricing pages), so a scenario only states them to explore
//! another region.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tidemark_core::scheduler::ControllerConfig;

use crate::error::SimError;

/// A whole scenario.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name shown in reports.
    pub name: String,
    /// What the scenario stands for and where its numbers come from.
    #[serde(default)]
    pub description: String,
    /// The seed of every random draw; the same seed gives the same report.
    pub seed: u64,
    /// Time stepping.
    pub time: TimeConfig,
    /// The bucket's objects and how they spread over prefixes.
    pub objects: ObjectsConfig,
    /// S3's partitions.
    pub s3: S3Config,
    /// The application's own load.
    pub app: AppConfig,
    /// The Lambda fleet.
    pub fleet: FleetConfig,
    /// Prices used for `cost_usd`.
    #[serde(default)]
    pub prices: Prices,
    /// Per-policy settings.
    #[serde(default)]
    pub policies: PoliciesConfig,
}

/// Time stepping: the simulator moves rates forward in steps, not individual requests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// Seconds per step; also how quickly the fleet learns what S3 answered.
    pub step_s: f64,
    /// Seconds per point of the report's time series.
    pub sample_s: f64,
    /// A run that has not finished by then stops and is reported as unfinished.
    pub max_days: f64,
}

/// The objects to back up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectsConfig {
    /// How many objects the bucket holds.
    pub total: f64,
    /// How many partitioned prefixes they sit under.
    pub prefixes: u32,
    /// Zipf exponent of prefix sizes: the i-th largest prefix holds a share proportional to i^-s.
    pub zipf_exponent: f64,
    /// Share of objects above the pack threshold, copied server-side (one PUT-priced copy each).
    pub large_fraction: f64,
    /// Small objects per 64 MiB pack.
    pub objects_per_pack: f64,
    /// PUT-priced requests per pack (create, parts, complete).
    pub puts_per_pack: f64,
}

/// S3's partitions of the source bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Requests per second one partition serves (5,500 GET/HEAD per the S3 guidance).
    pub partition_rps: f64,
    /// Partitions every prefix has when the backup starts.
    pub initial_partitions: u32,
    /// Partitions a prefix can split into at most.
    pub max_partitions: u32,
    /// Seconds of sustained load before a prefix's partitions split in two.
    pub split_after_s: f64,
    /// Offered load, as a share of capacity, that counts as sustained load.
    pub split_utilization: f64,
}

/// The application that owns the bucket and shares its capacity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The busiest prefix's diurnal peak, as a share of its initial capacity.
    pub peak_utilization: f64,
    /// How the application's load follows prefix size: load is proportional to objects^x.
    pub size_correlation: f64,
    /// Diurnal swing: load is base x (1 + amplitude x cos(2 pi (hour - peak) / 24)).
    pub diurnal_amplitude: f64,
    /// Hour of day (UTC) of the application's peak.
    pub peak_hour_utc: f64,
    /// Hour of day (UTC) at which the backup starts.
    pub start_hour_utc: f64,
    /// Standard deviation of the step-to-step noise, as a share of the load.
    pub noise: f64,
}

/// The Lambda fleet that runs the workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetConfig {
    /// The event source's MaximumConcurrency: workers at most.
    pub max_concurrency: u32,
    /// Concurrent invocations when the queue is first seen (5 for SQS).
    pub initial_concurrency: u32,
    /// Concurrency added per minute while there is work (300 for SQS).
    pub ramp_per_minute: u32,
    /// Requests a worker keeps in flight.
    pub requests_in_flight: u32,
    /// Seconds one object's request (and its share of packing) occupies a slot.
    pub request_latency_s: f64,
    /// Seconds of a cold start, paid once per new execution environment.
    pub cold_start_s: f64,
    /// Objects per task (a partition small enough for one invocation).
    pub task_objects: f64,
    /// The function timeout; a task still running then is checkpointed and re-queued.
    pub invocation_timeout_s: f64,
    /// Seconds per task for receiving it, taking its lease, checkpointing and registering its segment.
    pub task_overhead_s: f64,
    /// Seconds a worker spends deferring one task it may not run (visibility change, next receive).
    pub defer_overhead_s: f64,
    /// Function memory, for GB-seconds.
    pub memory_mb: f64,
}

/// Prices (us-east-1 list prices, from the AWS pricing pages).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    /// S3 GET per 1,000 requests (Standard).
    pub s3_get_per_1000: f64,
    /// S3 PUT/COPY/POST/LIST per 1,000 requests (Standard).
    pub s3_put_per_1000: f64,
    /// Lambda per GB-second (Arm).
    pub lambda_gb_s: f64,
    /// Lambda per million invocations.
    pub lambda_per_million: f64,
    /// SQS per million requests (standard queue).
    pub sqs_per_million: f64,
    /// DynamoDB on-demand per million writes.
    pub ddb_write_per_million: f64,
    /// DynamoDB on-demand per million reads.
    pub ddb_read_per_million: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Prices {
            s3_get_per_1000: 0.0004,
            s3_put_per_1000: 0.005,
            lambda_gb_s: 0.000_013_333_4,
            lambda_per_million: 0.20,
            sqs_per_million: 0.40,
            ddb_write_per_million: 0.625,
            ddb_read_per_million: 0.125,
        }
    }
}

/// Settings of the three policies.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoliciesConfig {
    /// tidemark's per-prefix controller.
    pub tidemark: TidemarkConfig,
    /// Fixed concurrency with per-request retries (s5cmd, rclone).
    pub fixed: FixedConfig,
    /// The AWS SDK's adaptive retry mode, one client per worker.
    pub sdk_adaptive: SdkAdaptiveConfig,
}

/// tidemark's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TidemarkConfig {
    /// Seconds between a worker's reports (claim renewal, admission check).
    pub renew_s: f64,
    /// The controller, exactly as the engine's scheduler takes it.
    pub controller: ControllerConfig,
}

impl Default for TidemarkConfig {
    fn default() -> Self {
        TidemarkConfig { renew_s: 20.0, controller: ControllerConfig::default() }
    }
}

/// Fixed concurrency: each worker keeps its slots busy and retries throttled requests with
/// exponential back-off, as s5cmd does through aws-sdk-go's DefaultRetryer (10 retries, throttle
/// delays of 2^i x [0.5 s, 1 s], at most 300 s).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FixedConfig {
    /// Retries before a request fails and its object is left for a later pass.
    pub max_retries: u32,
    /// The first retry's delay before jitter; retry i waits 2^i x [1, 2] x this.
    pub min_throttle_delay_s: f64,
    /// The longest delay.
    pub max_delay_s: f64,
}

impl Default for FixedConfig {
    fn default() -> Self {
        FixedConfig { max_retries: 10, min_throttle_delay_s: 0.5, max_delay_s: 300.0 }
    }
}

/// The SDK's adaptive mode: a CUBIC token bucket per client (smithy-rs `ClientRateLimiter`) on top
/// of the standard retry strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SdkAdaptiveConfig {
    /// Attempts per request (3 by default).
    pub max_attempts: u32,
    /// The standard strategy's initial back-off; retry i waits up to 2^i x this (full jitter).
    pub initial_backoff_s: f64,
    /// The longest back-off.
    pub max_backoff_s: f64,
}

impl Default for SdkAdaptiveConfig {
    fn default() -> Self {
        SdkAdaptiveConfig { max_attempts: 3, initial_backoff_s: 1.0, max_backoff_s: 20.0 }
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn from_file(path: &Path) -> Result<Scenario, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::Read { path: path.to_path_buf(), source })?;
        Scenario::from_toml_str(&text, &path.display().to_string())
    }

    /// Parses and checks a scenario; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Scenario, SimError> {
        let parse_error = |field: String, message: String| SimError::Parse { origin: origin.to_string(), field, message };
        let deserializer =
            toml::Deserializer::parse(text).map_err(|e| parse_error(".".to_string(), with_line(text, e.message(), e.span())))?;
        let scenario: Scenario = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let mut field = e.path().to_string();
            let inner = e.into_inner();
            // serde reports a missing field at its table; name the field itself.
            if let Some(name) = inner.message().strip_prefix("missing field `").and_then(|rest| rest.split('`').next()) {
                field = if field == "." { name.to_string() } else { format!("{field}.{name}") };
            }
            parse_error(field, with_line(text, inner.message(), inner.span()))
        })?;
        scenario.validate(origin)?;
        Ok(scenario)
    }

    /// Checks ranges and consistency that types alone cannot express.
    pub fn validate(&self, origin: &str) -> Result<(), SimError> {
        let invalid = |field: &str, message: String| SimError::Invalid { origin: origin.to_string(), field: field.to_string(), message };
        let positive: [(&str, f64); 13] = [
            ("time.step_s", self.time.step_s),
            ("time.sample_s", self.time.sample_s),
            ("time.max_days", self.time.max_days),
            ("objects.total", self.objects.total),
            ("objects.objects_per_pack", self.objects.objects_per_pack),
            ("objects.puts_per_pack", self.objects.puts_per_pack),
            ("s3.partition_rps", self.s3.partition_rps),
            ("s3.split_after_s", self.s3.split_after_s),
            ("fleet.request_latency_s", self.fleet.request_latency_s),
            ("fleet.task_objects", self.fleet.task_objects),
            ("fleet.invocation_timeout_s", self.fleet.invocation_timeout_s),
            ("fleet.memory_mb", self.fleet.memory_mb),
            ("policies.tidemark.renew_s", self.policies.tidemark.renew_s),
        ];
        for (field, value) in positive {
            if !(value.is_finite() && value > 0.0) {
                return Err(invalid(field, format!("must be a positive number, got {value}")));
            }
        }
        let non_negative: [(&str, f64); 8] = [
            ("objects.zipf_exponent", self.objects.zipf_exponent),
            ("app.size_correlation", self.app.size_correlation),
            ("app.noise", self.app.noise),
            ("fleet.cold_start_s", self.fleet.cold_start_s),
            ("fleet.task_overhead_s", self.fleet.task_overhead_s),
            ("fleet.defer_overhead_s", self.fleet.defer_overhead_s),
            ("policies.fixed.min_throttle_delay_s", self.policies.fixed.min_throttle_delay_s),
            ("policies.sdk_adaptive.initial_backoff_s", self.policies.sdk_adaptive.initial_backoff_s),
        ];
        for (field, value) in non_negative {
            if !(value.is_finite() && value >= 0.0) {
                return Err(invalid(field, format!("must be zero or more, got {value}")));
            }
        }
        let fractions: [(&str, f64); 4] = [
            ("objects.large_fraction", self.objects.large_fraction),
            ("app.peak_utilization", self.app.peak_utilization),
            ("app.diurnal_amplitude", self.app.diurnal_amplitude),
            ("s3.split_utilization", self.s3.split_utilization),
        ];
        for (field, value) in fractions {
            if !(0.0..=1.0).contains(&value) {
                return Err(invalid(field, format!("must be between 0 and 1, got {value}")));
            }
        }
        if self.app.diurnal_amplitude >= 1.0 {
            return Err(invalid("app.diurnal_amplitude", "must be below 1 so the load stays positive".into()));
        }
        if !(0.0..24.0).contains(&self.app.peak_hour_utc) {
            return Err(invalid("app.peak_hour_utc", format!("must be in [0, 24), got {}", self.app.peak_hour_utc)));
        }
        if !(0.0..24.0).contains(&self.app.start_hour_utc) {
            return Err(invalid("app.start_hour_utc", format!("must be in [0, 24), got {}", self.app.start_hour_utc)));
        }
        let counts: [(&str, u32); 6] = [
            ("objects.prefixes", self.objects.prefixes),
            ("s3.initial_partitions", self.s3.initial_partitions),
            ("fleet.max_concurrency", self.fleet.max_concurrency),
            ("fleet.initial_concurrency", self.fleet.initial_concurrency),
            ("fleet.requests_in_flight", self.fleet.requests_in_flight),
            ("policies.sdk_adaptive.max_attempts", self.policies.sdk_adaptive.max_attempts),
        ];
        for (field, value) in counts {
            if value == 0 {
                return Err(invalid(field, "must be at least 1".into()));
            }
        }
        if self.s3.max_partitions < self.s3.initial_partitions {
            return Err(invalid("s3.max_partitions", format!("must be at least s3.initial_partitions ({})", self.s3.initial_partitions)));
        }
        if self.objects.total / f64::from(self.objects.prefixes) < 1.0 {
            return Err(invalid("objects.total", "must give every prefix at least one object".into()));
        }
        if self.time.sample_s < self.time.step_s {
            return Err(invalid("time.sample_s", format!("must be at least time.step_s ({})", self.time.step_s)));
        }
        let steps = self.time.max_days * 86_400.0 / self.time.step_s;
        if steps > 5.0e6 {
            return Err(invalid(
                "time.step_s",
                format!("gives {steps:.0} steps over time.max_days; use a longer step or fewer days (at most 5,000,000 steps)"),
            ));
        }
        let peak_app = self.app.peak_utilization * (1.0 + 3.0 * self.app.noise);
        if peak_app >= 1.0 {
            return Err(invalid(
                "app.peak_utilization",
                "with its noise the application alone would exceed a prefix's initial capacity".into(),
            ));
        }
        let controller = &self.policies.tidemark.controller;
        if let Err(e) = controller.validate() {
            return Err(invalid("policies.tidemark.controller", e.to_string()));
        }
        if self.policies.tidemark.renew_s * 1000.0 >= controller.lease_ms as f64 {
            return Err(invalid(
                "policies.tidemark.renew_s",
                format!("must be shorter than the controller's lease ({} ms)", controller.lease_ms),
            ));
        }
        if self.policies.fixed.max_delay_s.is_nan() || self.policies.fixed.max_delay_s < self.policies.fixed.min_throttle_delay_s {
            return Err(invalid("policies.fixed.max_delay_s", "must be at least min_throttle_delay_s".into()));
        }
        if self.policies.sdk_adaptive.max_backoff_s.is_nan()
            || self.policies.sdk_adaptive.max_backoff_s < self.policies.sdk_adaptive.initial_backoff_s
        {
            return Err(invalid("policies.sdk_adaptive.max_backoff_s", "must be at least initial_backoff_s".into()));
        }
        Ok(())
    }
}

/// Adds "at line N" to a TOML error message when the parser knows where it is.
fn with_line(text: &str, message: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{message} (line {line})")
        }
        None => message.to_string(),
    }
}
