//! The listing planner on the in-memory S3: on a skewed bucket it plans exactly the partitions of
//! the whole sorted listing while splitting the huge prefix into parallel sub-prefix listings,
//! and its summaries stay under a constant number of samples as the bucket grows tenfold.

use bytes::Bytes;
use tidemark_core::plan::listing::{self, ListingOptions};
use tidemark_core::plan::partition::{Partition, PlanTargets, Planner};
use tidemark_core::ports::{list_all, ObjectStore, PutOptions};
use tidemark_testkit::fakes::MemObjectStore;

async fn bucket(keys: &[String]) -> MemObjectStore {
    let s3 = MemObjectStore::new();
    s3.create("src", false);
    for (i, k) in keys.iter().enumerate() {
        // Sizes vary so that byte counts are checked too.
        s3.put("src", k, Bytes::from(vec![b'x'; i % 7]), &PutOptions::default()).await.unwrap();
    }
    s3
}

/// The plan of the whole listing sorted in memory: what the listing planner must equal when its
/// summaries keep every key.
async fn reference(s3: &MemObjectStore, prefix: &str, targets: PlanTargets) -> Vec<Partition> {
    let mut all: Vec<(String, u64)> =
        list_all(s3, "src", prefix, None).await.unwrap().objects.into_iter().map(|o| (o.key, o.size)).collect();
    all.sort();
    let mut planner = Planner::new(targets);
    for (k, s) in &all {
        planner.push(k, *s).unwrap();
    }
    planner.finish()
}

/// Bounds are contiguous, cover the key space, and every key lies in exactly one partition.
fn check_cover(parts: &[Partition], keys: &[String]) {
    assert_eq!(parts.first().unwrap().start, "");
    assert_eq!(parts.last().unwrap().end, None);
    for w in parts.windows(2) {
        assert_eq!(w[0].end.as_deref(), Some(w[1].start.as_str()));
        assert!(w[0].start < w[1].start, "{w:?}");
    }
    for p in &parts[1..] {
        assert!(keys.contains(&p.start), "a partition starts at a key that exists: {:?}", p.start);
    }
    for k in keys {
        assert_eq!(parts.iter().filter(|p| p.contains(k)).count(), 1, "{k}");
    }
}

/// A skewed bucket: keys at the root, one huge prefix (3,050 keys, with one sub-prefix that is
/// itself large and a level of direct objects), 40 small prefixes, and awkward keys.
fn skewed_keys() -> Vec<String> {
    let mut keys = vec!["root-a.txt".to_string(), "root b+c%20.txt".into(), "zz-root".into(), "big".into(), "big.txt".into()];
    for d in 0..20 {
        if d == 7 {
            // big/d07/ alone is larger than one page: it is split again.
            keys.extend((0..1200).map(|i| format!("big/d07/e{:02}/k{i:04}", i / 100)));
        } else {
            keys.extend((0..90).map(|i| format!("big/d{d:02}/k{i:03}")));
        }
    }
    keys.extend((0..50).map(|i| format!("big/direct-{i:02}")));
    keys.extend(["big/a+b c", "big/100%/x", "big/ünï/cødé", "big/with space/k", "big/", "big//double"].map(String::from));
    for p in 0..40 {
        keys.extend((0..5).map(|i| format!("s{p:02}/k{i}")));
    }
    keys.extend(["s03/a+b c", "s04/100%/x", "s05/ünï/cødé", "s06/with space/k", "s07/%2F/+"].map(String::from));
    keys
}

#[tokio::test]
async fn a_skewed_bucket_plans_like_its_sorted_listing_and_the_huge_prefix_is_split() {
    let keys = skewed_keys();
    let s3 = bucket(&keys).await;
    let targets = PlanTargets { objects: 250, bytes: u64::MAX };
    let expected = reference(&s3, "", targets).await;
    let before = s3.list_calls().len();

    let plan = listing::plan(&s3, "src", "", targets, &ListingOptions::new(4)).await.unwrap();
    let calls = s3.list_calls()[before..].to_vec();
    assert_eq!(plan.partitions, expected, "the same partitions as the sorted listing");
    assert!(plan.partitions.len() > 10, "{}", plan.partitions.len());
    check_cover(&plan.partitions, &keys);
    assert_eq!(plan.stats.objects, keys.len() as u64);
    assert_eq!(plan.stats.samples, keys.len(), "small buckets keep every key");

    let count = |prefix: &str, delimiter: Option<&str>| calls.iter().filter(|(p, d)| p == prefix && d.as_deref() == delimiter).count();
    // The root, big/ and big/d07/ have a full first page: each is listed once without the
    // delimiter (not followed page by page) and then split with it.
    for large in ["", "big/", "big/d07/"] {
        assert_eq!(count(large, None), 1, "{large:?} is not listed in one chain: {calls:?}");
        assert!(count(large, Some("/")) >= 1, "{large:?} is split with the delimiter");
    }
    assert_eq!(plan.stats.split_prefixes, 3);
    // Its sub-prefixes are listed on their own, one page each.
    for d in (0..20).filter(|d| *d != 7) {
        assert_eq!(count(&format!("big/d{d:02}/"), None), 1, "big/d{d:02}/");
    }
    for e in 0..12 {
        assert_eq!(count(&format!("big/d07/e{e:02}/"), None), 1);
    }
    for awkward in ["big/100%/", "big/ünï/", "big/with space/", "big//", "s05/"] {
        assert_eq!(count(awkward, None), 1, "{awkward:?}: {calls:?}");
    }
    assert_eq!(plan.stats.list_calls, calls.len() as u64);
    eprintln!("skewed bucket: {} keys, {} partitions, stats {:?}", keys.len(), plan.partitions.len(), plan.stats);

    // A prefix of the bucket plans like the sorted listing of that prefix.
    let expected = reference(&s3, "big/", targets).await;
    let plan = listing::plan(&s3, "src", "big/", targets, &ListingOptions::new(2)).await.unwrap();
    assert_eq!(plan.partitions, expected);
}

/// `n` keys in a two-level layout with some large directories.
fn grown_keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{:02}/q{:03}/k{i:07}", i % 13, (i / 13) % (n / 130).max(1))).collect()
}

#[tokio::test]
async fn summaries_stay_bounded_as_the_bucket_grows_tenfold() {
    let opts = ListingOptions { concurrency: 4, page_keys: Some(50), range_samples: 64, total_samples: 256 };
    // The whole prefix's summary, plus one being handed up by each sub-prefix listed at once.
    let bound = opts.total_samples + 1 + (opts.concurrency + 1) * (opts.range_samples + 1);
    let targets = PlanTargets { objects: 400, bytes: u64::MAX };
    let mut peaks = Vec::new();
    for n in [2_000usize, 20_000] {
        let mut keys = grown_keys(n);
        let s3 = bucket(&keys).await;
        let plan = listing::plan(&s3, "src", "", targets, &opts).await.unwrap();
        let s = &plan.stats;
        keys.sort();
        // Counts are estimates, but every partition's true size stays near the target.
        let sizes: Vec<usize> = plan.partitions.iter().map(|p| keys.iter().filter(|k| p.contains(k)).count()).collect();
        eprintln!("{n} keys: {} partitions, true sizes {sizes:?}, stats {s:?}", plan.partitions.len());
        assert_eq!(s.objects, n as u64);
        assert_eq!(plan.partitions.iter().map(|p| p.objects).sum::<u64>(), n as u64, "estimates still add up");
        assert!(s.peak_samples <= bound, "{s:?}");
        assert!(s.samples <= opts.total_samples + 1, "{s:?}");
        check_cover(&plan.partitions, &keys);
        assert!(sizes.iter().all(|&k| k <= 2 * targets.objects as usize), "{sizes:?}");
        peaks.push(s.peak_samples);
    }
    assert!(peaks[1] > opts.total_samples / 2, "the larger bucket fills the summary: {peaks:?}");
    assert!(peaks[1] <= bound, "ten times the keys, the same bound: {peaks:?}");
}
