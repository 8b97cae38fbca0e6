//! The stepwise seeder on the in-memory fakes: it plans the same partitions (and task ids) as the
//! one-shot seeder from a multi-file, unsorted report; duplicated and retried steps enqueue
//! nothing twice and lose nothing; a data file's summary stays bounded however long the file is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tidemark_core::config::EngineConfig;
use tidemark_core::control::RunState;
use tidemark_core::engine::{Engine, QueueUrls};
use tidemark_core::plan::inventory::{samples_per_file, summarise_file, Inventory, ReadOptions};
use tidemark_core::plan::partition::{Partition, PlanTargets};
use tidemark_core::ports::{Queue, SystemClock};
use tidemark_core::protect::seed::{plan_by_inventory, task_id};
use tidemark_core::protect::steps::{self, StepOutcome};
use tidemark_core::protocol::messages::{parse_work_message, StepKind, StepMessage, WorkMessage};
use tidemark_testkit::fakes::{MemControlStore, MemObjectStore, MemQueue};
use tidemark_testkit::inventory_gen::{write_report, Report, ReportSpec, RowOrder};

fn engine(step_seconds: u64) -> (Engine, Arc<MemQueue>) {
    let s3 = Arc::new(MemObjectStore::new());
    s3.create("src", false);
    s3.create("vault", true);
    let queue = Arc::new(MemQueue::new());
    let mut config = EngineConfig::new("vault");
    config.step_seconds = step_seconds;
    let engine = Engine {
        source: s3.clone(),
        vault: s3,
        control: Arc::new(MemControlStore::new()),
        queue: queue.clone(),
        clock: Arc::new(SystemClock),
        keys: Arc::new(tidemark_core::memory::MemKeys::new()),
        config,
        queues: QueueUrls { work: "work".into(), delta: "delta".into(), restore: "restore".into() },
    };
    (engine, queue)
}

/// A shuffled report of `objects` keys over `files` data files, for bucket `src`.
fn report(objects: u64, files: usize) -> (tempfile::TempDir, Report) {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ReportSpec::new(objects, files);
    spec.source_bucket = "src".into();
    spec.order = RowOrder::Shuffled;
    let report = write_report(dir.path(), &spec).unwrap();
    (dir, report)
}

/// Everything the steps sent, by kind.
#[derive(Default)]
struct Sent {
    /// Task id → how many messages named it.
    tasks: BTreeMap<String, usize>,
    summarise: Vec<usize>,
    plans: usize,
    outcomes: Vec<StepOutcome>,
}

/// Handles every step message on the work queue until none is left (each one `times` times,
/// as a queue that delivers twice would), and tallies every message sent.
async fn drain(engine: &Engine, queue: &MemQueue, times: usize, sent: &mut Sent) {
    loop {
        let msgs = queue.receive("work", 10, 0, 30).await.unwrap();
        if msgs.is_empty() {
            return;
        }
        for m in msgs {
            match parse_work_message(&m.body).unwrap() {
                WorkMessage::Task(t) => *sent.tasks.entry(t.task_id).or_default() += 1,
                WorkMessage::Step(step) => {
                    match step.step {
                        StepKind::Summarise => sent.summarise.push(step.file.unwrap()),
                        StepKind::Plan => sent.plans += 1,
                    }
                    for _ in 0..times {
                        sent.outcomes.push(steps::handle_step(engine, &step).await.unwrap());
                    }
                }
            }
            queue.delete("work", &m.receipt).await.unwrap();
        }
    }
}

fn shape(parts: &[Partition]) -> Vec<(String, Option<String>, u64, u64)> {
    parts.iter().map(|p| (p.start.clone(), p.end.clone(), p.objects, p.bytes)).collect()
}

/// (a) and (b): on a 4-file shuffled report large enough that summaries sample rather than
/// list every key, the stepwise plan has the one-shot plan's partitions and task ids, even
/// when every step message is handled twice and the plan step runs out of time after each
/// chunk; each task is enqueued exactly once, and a repeated start sends nothing.
#[tokio::test(flavor = "multi_thread")]
async fn stepwise_plan_equals_one_shot_and_duplicates_enqueue_nothing_twice() {
    let (_dir, report) = report(24_000, 4);
    let targets = PlanTargets { objects: 40, bytes: u64::MAX };
    let (e, queue) = engine(0);
    let one_shot = plan_by_inventory(e.source.clone(), &report.manifest_url, "src", "", targets).await.unwrap();
    assert!(one_shot.len() > 256, "more tasks than one chunk, so the plan step continues: {}", one_shot.len());

    let started = steps::start(&e, "src", "", &report.manifest_url, targets).await.unwrap();
    assert_eq!(started.enqueued, 4, "one summarise message per data file");
    let again = steps::start(&e, "src", "", &report.manifest_url, targets).await.unwrap();
    assert!(again.resumed && again.enqueued == 0, "a repeated start sends nothing: {again:?}");
    let run_id = started.run.run_id.clone();

    let mut sent = Sent::default();
    drain(&e, &queue, 2, &mut sent).await;
    assert_eq!(sent.summarise, vec![0, 1, 2, 3]);
    assert!(sent.plans >= 2, "the plan step continued in a new message: {}", sent.plans);
    assert!(sent.outcomes.contains(&StepOutcome::Continued));
    assert!(sent.outcomes.contains(&StepOutcome::AlreadyDone), "duplicates find their work done");

    let (_, run) = e.control().get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Running);
    assert_eq!(run.task_count, one_shot.len() as u64);
    assert!(run.tasks.is_empty(), "the run item does not list task ids");
    let mut tasks = e.control().tasks(&run_id).await.unwrap();
    tasks.sort_by(|a, b| a.partition.start.cmp(&b.partition.start));
    let stepwise: Vec<Partition> = tasks.iter().map(|t| t.partition.clone()).collect();
    assert_eq!(shape(&stepwise), shape(&one_shot), "the same partitions");
    for t in &tasks {
        assert_eq!(t.task_id, task_id(&run_id, &t.partition), "task ids follow the ids scheme");
        assert_eq!(sent.tasks.get(&t.task_id), Some(&1), "task {} enqueued exactly once", t.task_id);
    }
    assert_eq!(sent.tasks.len(), tasks.len(), "no message names a task that does not exist");
    assert_eq!(one_shot.iter().map(|p| p.objects).sum::<u64>(), report.expected.current_objects);

    // Anything redelivered after the plan (a summarise, a plan) and a new start send nothing.
    for step in [StepMessage::summarise(&run_id, 3), StepMessage::plan(&run_id)] {
        assert_eq!(steps::handle_step(&e, &step).await.unwrap(), StepOutcome::AlreadyDone);
    }
    assert_eq!(steps::start(&e, "src", "", &report.manifest_url, targets).await.unwrap().enqueued, 0);
    assert_eq!(queue.len("work"), 0, "nothing was sent");
}

/// (b) continued: a plan message that arrives before the last summary waits; a step that dies
/// between storing a summary and marking its file is redone by the retry without a second
/// summary or a second plan message; the run reaches `Running` and, with its tasks done, is
/// marked complete by whoever finishes last.
#[tokio::test(flavor = "multi_thread")]
async fn early_plan_messages_wait_and_retried_steps_lose_nothing() {
    let (_dir, report) = report(600, 3);
    let targets = PlanTargets { objects: 50, bytes: u64::MAX };
    let (e, queue) = engine(600);
    let started = steps::start(&e, "src", "", &report.manifest_url, targets).await.unwrap();
    let run_id = started.run.run_id.clone();
    assert_eq!(steps::plan(&e, &run_id, Duration::from_secs(60)).await.unwrap(), StepOutcome::Waiting);
    // File 1's summary is stored but the step "dies" before marking it: the plan does not
    // know the file is done, so a redelivered message must mark it.
    let key = tidemark_core::vault::summary_key("src", &run_id, 1);
    assert_eq!(steps::summarise(&e, &run_id, 1).await.unwrap(), StepOutcome::Done);
    let (version, mut plan) = e.control().seed_plan(&run_id).await.unwrap().unwrap();
    let stored = e.vault.head("vault", &key, None).await.unwrap().expect("summary stored");
    plan.summarised = "00".into();
    assert!(e.control().update_seed_plan(&run_id, version, &plan).await.unwrap());
    assert_eq!(steps::summarise(&e, &run_id, 1).await.unwrap(), StepOutcome::Done);
    let again = e.vault.head("vault", &key, None).await.unwrap().unwrap();
    assert_eq!(stored.version_id, again.version_id, "the stored summary was reused, not rewritten");

    let mut sent = Sent::default();
    drain(&e, &queue, 1, &mut sent).await;
    assert_eq!(sent.plans, 1, "one plan message, from the step that marked the last file");
    let (_, run) = e.control().get_run(&run_id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Running);
    let tasks = e.control().tasks(&run_id).await.unwrap();
    assert_eq!(tasks.len() as u64, run.task_count);
    assert!(sent.tasks.values().all(|&n| n == 1) && sent.tasks.len() == tasks.len());
    assert_eq!(tasks.iter().map(|t| t.partition.objects).sum::<u64>(), report.expected.current_objects, "no object lost");
}

/// (c): a data file's summary stays under its bound as the file grows tenfold.
#[tokio::test(flavor = "multi_thread")]
async fn a_summary_stays_bounded_as_its_file_grows() {
    let max = 64;
    let mut sizes = Vec::new();
    for objects in [5_000u64, 50_000] {
        let (_dir, report) = report(objects, 1);
        let inventory = Inventory::open_url(&report.manifest_url).unwrap();
        let summary = summarise_file(&inventory, 0, &ReadOptions::default(), max, 16 << 20).unwrap();
        assert_eq!(summary.objects, report.expected.current_objects);
        assert!(summary.samples.len() <= max + 1, "{objects} rows: {} samples", summary.samples.len());
        let json = serde_json::to_vec(&summary).unwrap().len();
        eprintln!("{objects} rows: {} samples, {json} bytes of JSON", summary.samples.len());
        sizes.push(json);
    }
    assert!(sizes[1] < sizes[0] * 2, "ten times the rows, not twice the summary: {sizes:?}");
    assert_eq!(samples_per_file(1), 16_384);
    assert_eq!(samples_per_file(1_000_000), 256, "a report of a million files still gets useful summaries");
}
