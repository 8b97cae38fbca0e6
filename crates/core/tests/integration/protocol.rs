//! The queue protocol: bodies written before messages carried a version still parse and run,
//! new writers produce the versioned bodies of the fixtures, and the dispatcher says the same
//! thing for every outcome whoever maps it (a Lambda's batch response or the local runner).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tidemark_core::config::EngineConfig;
use tidemark_core::engine::Engine;
use tidemark_core::plan::partition::PlanTargets;
use tidemark_core::ports::{ObjectStore, PutOptions};
use tidemark_core::protect::seed::{seed, PlanSource};
use tidemark_core::protocol::dispatch::{dispatch, Disposition, BUSY_RETRY};
use tidemark_core::protocol::messages::{parse_work_message, StepKind, StepMessage, TaskMessage, WorkMessage, VERSION};
use tidemark_testkit::fakes::{mem_engine, MemObjectStore};

fn fixture(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/messages").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).trim().to_string()
}

const RUN: &str = "01JDR8Z3Q4K5V6W7X8Y9Z0ABCD";
const TASK: &str = "3f9a1c0e7b2d4a58";

#[test]
fn bodies_of_every_version_parse_into_the_same_message() {
    for (file, expected) in [
        ("task-unversioned.json", WorkMessage::Task(TaskMessage::new(RUN, TASK))),
        ("task-v1.json", WorkMessage::Task(TaskMessage::new(RUN, TASK))),
        ("seed-step-summarise-unversioned.json", WorkMessage::Step(StepMessage::summarise(RUN, 3))),
        ("seed-step-summarise-v1.json", WorkMessage::Step(StepMessage::summarise(RUN, 3))),
        ("seed-step-plan-unversioned.json", WorkMessage::Step(StepMessage::plan(RUN))),
        ("seed-step-plan-v1.json", WorkMessage::Step(StepMessage::plan(RUN))),
    ] {
        let got = parse_work_message(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(got, expected, "{file}");
        assert_eq!(got.version(), 1, "{file}: a body without a version is version 1");
    }
}

#[test]
fn writers_produce_the_versioned_fixtures() {
    assert_eq!(VERSION, 1);
    assert_eq!(TaskMessage::new(RUN, TASK).body(), fixture("task-v1.json"));
    assert_eq!(StepMessage::summarise(RUN, 3).body(), fixture("seed-step-summarise-v1.json"));
    assert_eq!(StepMessage::plan(RUN).body(), fixture("seed-step-plan-v1.json"));
}

#[test]
fn bodies_that_are_not_messages_are_permanent_errors_and_newer_versions_are_retried() {
    let permanent = [
        ("not json", "not JSON"),
        (r#"{"kind":"sideways","run_id":"r"}"#, "unknown kind 'sideways'"),
        (r#"{"kind":"task","run_id":"r"}"#, "not a task"),
        (r#"{"kind":"seed_step","run_id":"r","step":"summarise"}"#, "names no data file"),
        (r#"{"kind":"seed_step","run_id":"r","step":"dance"}"#, "malformed seed step"),
    ];
    for (body, says) in permanent {
        let e = parse_work_message(body).unwrap_err();
        assert!(!e.is_transient(), "{body}: {e}");
        assert!(e.to_string().contains(says), "{body}: '{e}' should say '{says}'");
    }
    let newer = parse_work_message(r#"{"kind":"task","version":2,"run_id":"r","task_id":"t"}"#).unwrap_err();
    assert!(newer.is_transient(), "{newer}");
    assert!(newer.to_string().contains("version 2 is newer"), "{newer}");
    assert_eq!(StepKind::Plan, StepMessage::plan("r").step);
}

fn engine() -> (Engine, Arc<MemObjectStore>) {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("src", false);
    s3.create("vault", true);
    (mem_engine(s3.clone(), EngineConfig::new("vault")), s3)
}

#[tokio::test]
async fn an_unversioned_task_body_from_before_the_upgrade_finishes_its_task() {
    let (e, s3) = engine();
    for i in 0..5 {
        s3.put("src", &format!("k{i}"), Bytes::from(format!("v{i}")), &PutOptions::default()).await.unwrap();
    }
    let seeded = seed(&e, "src", "", PlanSource::Listing(PlanTargets::default())).await.unwrap();
    let tasks = e.control().tasks(&seeded.run.run_id).await.unwrap();
    assert_eq!(tasks.len(), 1);
    // The body exactly as the code before versioned messages wrote it.
    let old = format!(r#"{{"run_id":"{}","task_id":"{}"}}"#, seeded.run.run_id, tasks[0].task_id);
    assert!(matches!(dispatch(&e, "m1", &old, "worker-a").await, Disposition::Done));
    let (_, task) = e.control().get_task(&seeded.run.run_id, &tasks[0].task_id).await.unwrap().unwrap();
    assert!(task.done && task.counters.objects == 5, "{task:?}");
    // A duplicate delivery is done at once.
    assert!(matches!(dispatch(&e, "m2", &old, "worker-b").await, Disposition::Done));
}

#[tokio::test]
async fn every_outcome_has_one_disposition() {
    let (e, s3) = engine();
    s3.put("src", "k", Bytes::from_static(b"v"), &PutOptions::default()).await.unwrap();
    let seeded = seed(&e, "src", "", PlanSource::Listing(PlanTargets::default())).await.unwrap();
    let task = e.control().tasks(&seeded.run.run_id).await.unwrap().remove(0);
    // Another live worker holds the lease: retry after the busy delay.
    e.control().claim(&seeded.run.run_id, &task.task_id, "someone-else", e.clock.now(), 30).await.unwrap().expect("claimed");
    let body = TaskMessage::new(&seeded.run.run_id, &task.task_id).body();
    match dispatch(&e, "m1", &body, "worker-a").await {
        Disposition::Retry { after, reason } => {
            assert_eq!(after, BUSY_RETRY);
            assert!(reason.contains("leased by another live worker"), "{reason}");
        }
        other => panic!("a busy task is retried, got {other:?}"),
    }
    // A body that is not a message: failed, and no run to blame.
    assert!(matches!(dispatch(&e, "m2", "garbage", "worker-a").await, Disposition::Failed { message: None, .. }));
    // A task that does not exist: failed, naming the message.
    let ghost = TaskMessage::new(&seeded.run.run_id, "no-such-task").body();
    match dispatch(&e, "m3", &ghost, "worker-a").await {
        Disposition::Failed { error, message: Some(WorkMessage::Task(t)) } => {
            assert_eq!(t.task_id, "no-such-task");
            assert!(error.to_string().contains("does not exist"), "{error}");
        }
        other => panic!("a missing task fails, got {other:?}"),
    }
    // A newer version than this reader: retried for an upgraded worker.
    let newer = format!(r#"{{"kind":"task","version":9,"run_id":"{}","task_id":"{}"}}"#, seeded.run.run_id, task.task_id);
    assert!(matches!(dispatch(&e, "m4", &newer, "worker-a").await, Disposition::Retry { after, .. } if after < Duration::from_secs(5)));
}
