//! What this process captured and how often S3 throttled it, per bucket and prefix, for the metrics the Lambda functions print.
//!
//! The engine has no metrics port: its handlers run under the CLI, the local runner and Lambda
//! alike, and only Lambda turns counts into CloudWatch metrics (EMF lines on stdout). So the
//! capture paths add what they did to one process-wide tally, and a Lambda handler takes it at
//! the end of its invocation and prints it. A Lambda process runs one invocation at a time, so
//! what it takes is what that invocation did; elsewhere nobody takes it and it only grows by a
//! few map entries per bucket and prefix.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counts since the tally was last taken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Objects (versions, delete markers excluded) and bytes captured into the vault, by source bucket.
    pub captured: BTreeMap<String, (u64, u64)>,
    /// `503 SlowDown` answers of the source, by (source bucket, top-level prefix) as the
    /// scheduler saw them; the prefix is `-` where the request named none.
    pub throttles: BTreeMap<(String, String), u64>,
}

static TALLY: Mutex<Option<Tally>> = Mutex::new(None);

fn with<R>(f: impl FnOnce(&mut Tally) -> R) -> R {
    // A panic elsewhere while holding the lock leaves counts that are still valid numbers.
    let mut guard = TALLY.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.get_or_insert_with(Tally::default))
}

/// Adds objects and bytes captured from `bucket`.
pub fn captured(bucket: &str, objects: u64, bytes: u64) {
    if objects == 0 && bytes == 0 {
        return;
    }
    with(|t| {
        let e = t.captured.entry(bucket.to_string()).or_default();
        e.0 += objects;
        e.1 += bytes;
    });
}

/// Adds `503 SlowDown` answers the source gave for `prefix` of `bucket`.
pub fn throttled(bucket: &str, prefix: &str, throttles: u64) {
    if throttles == 0 {
        return;
    }
    let prefix = if prefix.is_empty() { "-" } else { prefix };
    with(|t| *t.throttles.entry((bucket.to_string(), prefix.to_string())).or_default() += throttles);
}

/// Everything counted since the last call, leaving the tally empty.
pub fn take() -> Tally {
    with(std::mem::take)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_by_bucket_and_prefix_and_taking_empties_the_tally() {
        // Other tests of this binary capture too, in parallel: only this test's buckets are checked.
        captured("tally-a", 2, 10);
        captured("tally-a", 1, 5);
        captured("tally-b", 0, 0);
        throttled("tally-a", "logs", 3);
        throttled("tally-a", "", 1);
        throttled("tally-a", "logs", 0);
        let t = take();
        let mine = |b: &str| b.starts_with("tally-");
        let captured: BTreeMap<_, _> = t.captured.into_iter().filter(|(b, _)| mine(b)).collect();
        let throttles: BTreeMap<_, _> = t.throttles.into_iter().filter(|((b, _), _)| mine(b)).collect();
        assert_eq!(captured, BTreeMap::from([("tally-a".to_string(), (3, 15))]));
        let key = |p: &str| ("tally-a".to_string(), p.to_string());
        assert_eq!(throttles, BTreeMap::from([(key("-"), 1), (key("logs"), 3)]));
        assert!(!take().captured.contains_key("tally-a"), "taking empties the tally");
    }
}
