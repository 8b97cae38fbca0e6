//! Steps the engine tests share: draining the work queue and sealing a recovery point.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tidemark_core::changes::checkpoint::{self, Sealed};
use tidemark_core::engine::Engine;
use tidemark_core::protocol::dispatch::{dispatch, Disposition};

/// Runs every message of the work queue until none is left.
pub async fn drain_work(e: &Engine) {
    loop {
        let msgs = e.queue.receive("work", 10, 0, 30).await.unwrap();
        if msgs.is_empty() {
            return;
        }
        for m in msgs {
            assert!(matches!(dispatch(e, &m.id, &m.body, "worker").await, Disposition::Done));
            e.queue.delete("work", &m.receipt).await.unwrap();
        }
    }
}

/// Seals a new recovery point of `src` a second after the last change (event times are whole seconds).
pub async fn seal(e: &Engine) -> DateTime<Utc> {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = Utc::now();
    match checkpoint::seal(e, "src", now, now).await.unwrap() {
        Sealed::New(p) => p.time,
        other => panic!("expected a new point, got {other:?}"),
    }
}
