//! The scrub function's handler on the fakes: invocations with a spent budget continue from the
//! cursor they keep in the control table until a pass is done, then start the next pass; a damaged
//! pack is counted in `VerifyDamaged`, whose EMF line CloudWatch can read.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use tidemark_core::changes::checkpoint::{self, Sealed};
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::Engine;
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::ports::{list_all, ObjectStore, PutOptions};
use tidemark_core::protect::seed::{seed, PlanSource};
use tidemark_core::protocol::dispatch::{dispatch, Disposition};
use tidemark_lambda::{scrub_handler, verify_damaged_emf, ScrubRequest};
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

async fn protected_vault() -> (Arc<MemObjectStore>, Engine) {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("src", false);
    s3.create("vault", true);
    let mut config = EngineConfig::new("vault");
    config.small_object_threshold = 2_000;
    config.batch_objects = 10;
    config.concurrency = 2;
    let engine = mem_engine(s3.clone(), config);
    for i in 0..50 {
        s3.put("src", &format!("k/{i:03}"), Bytes::from(format!("object {i} ").repeat(8)), &PutOptions::default()).await.unwrap();
    }
    seed(&engine, "src", "", PlanSource::Listing(PlanTargets { objects: 25, ..Default::default() })).await.unwrap();
    loop {
        let msgs = engine.queue.receive("work", 10, 0, 30).await.unwrap();
        if msgs.is_empty() {
            break;
        }
        for m in msgs {
            assert!(matches!(dispatch(&engine, &m.id, &m.body, "worker").await, Disposition::Done));
            engine.queue.delete("work", &m.receipt).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = Utc::now();
    assert!(matches!(checkpoint::seal(&engine, "src", now, now).await.unwrap(), Sealed::New(_)));
    (s3, engine)
}

#[tokio::test(flavor = "multi_thread")]
async fn scrub_invocations_continue_a_pass_and_report_damage_as_emf() {
    let (s3, engine) = protected_vault().await;
    let packs: Vec<String> =
        list_all(s3.as_ref(), "vault", "v1/src/packs/", None).await.unwrap().objects.into_iter().map(|o| o.key).collect();
    assert!(packs.len() >= 5, "{packs:?}");
    s3.damage("vault", packs.last().unwrap(), 0).unwrap();

    let mut invocations = 0;
    let (mut packs_read, mut damaged) = (0, 0);
    loop {
        let r = scrub_handler(&engine, ScrubRequest::default(), 1.0, Duration::ZERO).await.unwrap();
        invocations += 1;
        packs_read += r.packs;
        damaged += r.damaged;
        let line = verify_damaged_emf(&r, Utc::now());
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Tidemark");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "VerifyDamaged");
        assert_eq!((line["Vault"].as_str(), line["VerifyDamaged"].as_u64()), (Some("vault"), Some(r.damaged)));
        if r.damaged > 0 {
            assert_eq!(r.problems[0].object, *packs.last().unwrap());
        }
        if r.next.is_none() {
            break;
        }
        assert!(invocations < 50, "the scrub makes no progress");
    }
    assert!(invocations >= 3, "a spent budget leaves the rest to later invocations ({invocations})");
    assert_eq!((packs_read, damaged), (packs.len() as u64, 1), "one pass reads every pack once and finds the damage once");
    // The pass is done: the next invocation starts again from the beginning.
    let again = scrub_handler(&engine, ScrubRequest::default(), 1.0, Duration::from_secs(60)).await.unwrap();
    assert_eq!((again.packs, again.damaged, again.next), (packs.len() as u64, 1, None));
}
