//! The local runner: polls the work and delta queues and calls the same handlers Lambda calls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tidemark_core::changes::backlog::{self, Received};
use tidemark_core::changes::delta::DeltaReport;
use tidemark_core::changes::events::parse_change;
use tidemark_core::control::{Counters, RunState};
use tidemark_core::engine::Engine;
use tidemark_core::protocol::dispatch::{dispatch, Disposition};
use tidemark_core::protocol::messages::WorkMessage;

/// Runs `workers` worker loops until the run is complete; reports progress on stderr.
pub async fn work_until_complete(engine: &Engine, run_id: &str, workers: usize, quiet: bool) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let owner = format!("local-{}-{:08x}", std::process::id(), rand_u32());
    let mut handles = Vec::new();
    for i in 0..workers.max(1) {
        let (engine, stop, owner) = (engine.clone(), stop.clone(), format!("{owner}-{i}"));
        handles.push(tokio::spawn(async move { worker_loop(&engine, &owner, &stop).await }));
    }
    // A process killed between its last task and marking the run complete leaves that step to
    // whoever runs next; once is enough, as workers mark the run after every task they finish.
    tidemark_core::protect::worker::finish_run_if_complete(engine, run_id).await?;
    let mut last_print = std::time::Instant::now();
    let result = loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(h) = handles.iter().position(|h| h.is_finished()) {
            let h = handles.remove(h);
            match h.await {
                Ok(Err(e)) => break Err(e),
                Err(e) => break Err(anyhow::anyhow!("worker panicked: {e}")),
                Ok(Ok(())) => {}
            }
        }
        let control = engine.control();
        let Some((_, run)) = control.get_run(run_id).await? else { break Err(anyhow::anyhow!("run {run_id} vanished")) };
        if run.state == RunState::Complete {
            break Ok(());
        }
        if !quiet && last_print.elapsed() > Duration::from_secs(2) {
            last_print = std::time::Instant::now();
            let tasks = control.tasks(run_id).await?;
            let mut c = Counters::default();
            tasks.iter().for_each(|t| c.add(&t.counters));
            let done = tasks.iter().filter(|t| t.done).count();
            eprintln!("protect {run_id}: {done}/{} tasks, {} objects, {} bytes", run.task_total(), c.objects, c.bytes);
        }
        // Tasks whose messages were lost (a killed process) come back when their lease expires.
        if handles.is_empty() {
            break Err(anyhow::anyhow!("all workers stopped before the run completed"));
        }
    };
    stop.store(true, Ordering::SeqCst);
    for h in handles {
        let _ = h.await;
    }
    result
}

fn rand_u32() -> u32 {
    (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)) ^ std::process::id()
}

/// Receives work messages one at a time and hands each to the engine's dispatcher, as the worker
/// function does; what the dispatcher says becomes a delete or a visibility change.
async fn worker_loop(engine: &Engine, owner: &str, stop: &AtomicBool) -> Result<()> {
    let visibility = (engine.config.lease_seconds * 2).clamp(10, 43_200) as i32;
    while !stop.load(Ordering::SeqCst) {
        let msgs = engine.queue.receive(&engine.queues.work, 1, 1, visibility).await?;
        for m in msgs {
            match dispatch(engine, &m.id, &m.body, owner).await {
                Disposition::Done => engine.queue.delete(&engine.queues.work, &m.receipt).await?,
                Disposition::Retry { after, .. } => {
                    let seconds = after.as_secs_f64().ceil().clamp(0.0, 43_200.0) as i32;
                    engine.queue.change_visibility(&engine.queues.work, &m.receipt, seconds).await?;
                }
                // A task or step that fails for good keeps its run from completing: stop and say so
                // (the message stays for the dead-letter queue).
                Disposition::Failed { error, message: Some(WorkMessage::Task(task)) } => {
                    return Err(anyhow::anyhow!("task {} failed: {error}", task.task_id));
                }
                Disposition::Failed { error, message: Some(WorkMessage::Step(step)) } => {
                    return Err(anyhow::anyhow!("seed step {:?} of run {} failed: {error}", step.step, step.run_id));
                }
                // A body that is no message at all belongs to no run: it is left for redelivery
                // and, after its retries, the dead-letter queue.
                Disposition::Failed { message: None, .. } => {}
            }
        }
    }
    Ok(())
}

/// Drains the delta queue: handles batches until the queue stays empty, or until it hands out
/// only changes made after the drain began (under continuous load the queue is never empty, and
/// those newer changes belong to the next recovery point). Failed messages come back at once so
/// they reach the dead-letter queue after their retries instead of blocking.
pub async fn drain_deltas(engine: &Engine) -> Result<DeltaReport> {
    let started = chrono::Utc::now();
    let mut total = DeltaReport::default();
    let mut empty_polls = 0;
    let mut caught_up = false;
    while empty_polls < 2 && !caught_up {
        let msgs = engine.queue.receive(&engine.queues.delta, 10, 1, 30).await?;
        if msgs.is_empty() {
            empty_polls += 1;
            continue;
        }
        empty_polls = 0;
        // A full batch of changes all newer than the drain's start: everything older was handed out.
        caught_up = msgs.len() >= 10 && msgs.iter().all(|m| matches!(parse_change(&m.body), Ok(Some(ev)) if ev.time > started));
        // Recorded like the delta function's batches, so a checkpoint running beside the drain
        // sees them.
        let batch: Vec<Received> = msgs.iter().map(Received::from).collect();
        let report = backlog::handle(engine, &batch).await?;
        let mut handled = Vec::new();
        for m in &msgs {
            if let Some((_, reason)) = report.failed.iter().find(|(id, _)| id == &m.id) {
                tracing::warn!(message_id = %m.id, receive_count = m.receive_count, %reason, "delta message failed; it will be retried, then dead-lettered");
                engine.queue.change_visibility(&engine.queues.delta, &m.receipt, 0).await?;
            } else {
                handled.push(m.receipt.clone());
            }
        }
        engine.queue.delete_many(&engine.queues.delta, &handled).await?;
        total.absorb(report);
    }
    Ok(total)
}
