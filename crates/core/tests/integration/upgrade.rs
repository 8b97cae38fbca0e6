//! Upgrades mid-run: a seed run and a restore run whose records were written by a build before
//! record format 2 (fixtures in `tests/fixtures/records/v1/`, no `format_version`), with their
//! work-queue and restore-queue messages in the version-1 and unversioned forms, finish under the
//! current code; and a record of a format newer than this build is retried, never misread.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use tidemark_core::changes::checkpoint::{self, Sealed};
use tidemark_core::config::EngineConfig;
use tidemark_core::control::{RunState, RECORD_FORMAT_VERSION};
use tidemark_core::ports::{list_all, Fetch, ObjectStore, PutOptions, SameStore};
use tidemark_core::protocol::dispatch::{dispatch, Disposition};
use tidemark_core::protocol::local::drive_restore;
use tidemark_core::restore::run::RestoreState;
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

const RUN: &str = "01JDUPGRADESEEDRUNV1000000";
const RESTORE: &str = "01JDUPGRADERESTORERUNV1000";

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/records/v1/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}")).trim().to_string()
}

#[tokio::test]
async fn runs_written_by_the_previous_format_finish_under_the_current_code() {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("up-src", false);
    s3.create("vault", true);
    let e = mem_engine(s3.clone(), EngineConfig::new("vault"));
    for i in 0..12 {
        let key = format!("{}{i:02}", if i < 6 { "a/k" } else { "q/k" });
        s3.put("up-src", &key, Bytes::from(format!("object {i}").repeat(10)), &PutOptions::default()).await.unwrap();
    }
    // The control state the previous build left behind.
    let run_pk = format!("run#{RUN}");
    let c = e.control.as_ref();
    assert!(c.put_new(&run_pk, "run", &fixture("seed-run.json"), None).await.unwrap());
    assert!(c.put_new(&run_pk, "task#task-a", &fixture("seed-task-a.json"), None).await.unwrap());
    assert!(c.put_new(&run_pk, "task#task-b", &fixture("seed-task-b.json"), None).await.unwrap());
    c.put_new("source#vault#up-src", "active-run#", &format!("\"{RUN}\""), None).await.unwrap();
    c.put_new("source#vault#up-src", "protected", "\"2026-11-30T10:00:00Z\"", None).await.unwrap();
    let (_, run) = e.control().get_run(RUN).await.unwrap().unwrap();
    assert_eq!(run.format_version, 1, "a record without the field is version 1");

    // Its messages, as the previous build sent them: one in the version-1 form, one unversioned.
    let bodies = [
        format!("{{\"kind\":\"task\",\"version\":1,\"run_id\":\"{RUN}\",\"task_id\":\"task-a\"}}"),
        format!("{{\"run_id\":\"{RUN}\",\"task_id\":\"task-b\"}}"),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let d = dispatch(&e, &format!("m{i}"), body, "new-worker").await;
        assert!(matches!(d, Disposition::Done), "{d:?}");
    }
    let (_, run) = e.control().get_run(RUN).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Complete);
    let tasks = e.control().tasks(RUN).await.unwrap();
    assert_eq!(tasks.iter().map(|t| t.counters.objects).sum::<u64>(), 12);
    assert!(tasks.iter().all(|t| t.done && t.format_version <= RECORD_FORMAT_VERSION));

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let now = Utc::now();
    let Sealed::New(point) = checkpoint::seal(&e, "up-src", now, now).await.unwrap() else { panic!("a point") };

    // A restore run the previous build planned and enqueued, then stopped.
    let t = point.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let restore_pk = format!("run#{RESTORE}");
    assert!(c.put_new(&restore_pk, "restore", &fixture("restore-run.json").replace("{{POINT}}", &t), None).await.unwrap());
    assert!(c.put_new(&restore_pk, "task#0000000000", &fixture("restore-task.json"), None).await.unwrap());
    s3.create("up-target", false);
    e.queue
        .send("restore", &format!("{{\"kind\":\"restore_task\",\"version\":1,\"restore_id\":\"{RESTORE}\",\"task_id\":\"0000000000\"}}"), 0)
        .await
        .unwrap();
    e.queue
        .send("restore", &format!("{{\"kind\":\"restore_step\",\"version\":1,\"restore_id\":\"{RESTORE}\",\"step\":\"finish\"}}"), 0)
        .await
        .unwrap();
    let status = drive_restore(&e, Arc::new(SameStore(s3.clone())), RESTORE, 2, "new-restorer", |_| {}).await.unwrap();
    assert_eq!(status.run.state, RestoreState::Done, "{:?}", status.run.error);
    assert_eq!(status.counters.objects, 12);
    let want = list_all(s3.as_ref(), "up-src", "", None).await.unwrap().objects;
    let got = list_all(s3.as_ref(), "up-target", "", None).await.unwrap().objects;
    assert_eq!(want.len(), got.len());
    for o in &want {
        let (Fetch::Found((_, a)), Fetch::Found((_, b))) =
            (s3.get("up-src", &o.key, None, None).await.unwrap(), s3.get("up-target", &o.key, None, None).await.unwrap())
        else {
            panic!("{} missing", o.key)
        };
        assert_eq!(a, b, "{}", o.key);
    }
}

#[tokio::test]
async fn a_record_of_a_newer_format_is_retried_not_misread() {
    let s3 = Arc::new(MemObjectStore::new());
    let e = mem_engine(s3, EngineConfig::new("vault"));
    let newer = fixture("seed-run.json").replacen('{', &format!("{{\"format_version\":{},", RECORD_FORMAT_VERSION + 1), 1);
    e.control.put_new(&format!("run#{RUN}"), "run", &newer, None).await.unwrap();
    let err = e.control().get_run(RUN).await.unwrap_err();
    assert!(err.is_transient() && err.to_string().contains("upgrade the readers first"), "{err}");
    let current = fixture("seed-run.json").replacen('{', &format!("{{\"format_version\":{RECORD_FORMAT_VERSION},"), 1);
    e.control.put_new("run#other", "run", &current, None).await.unwrap();
    assert_eq!(e.control().get_run("other").await.unwrap().unwrap().1.format_version, RECORD_FORMAT_VERSION);
}
