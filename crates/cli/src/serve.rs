//! `tidemark serve`: the REST API on a loopback port, with the restore queue worked in the same
//! process, so that a restore started through the API on the local stack runs to its end.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use tidemark_api::ApiState;
use tidemark_core::protocol::local::work_restore_queue;

use crate::context::{s3_url, Context};

/// Checks that `listen` is an IP:PORT on a loopback interface.
pub fn loopback(listen: &str) -> Result<SocketAddr> {
    let addr: SocketAddr = listen.parse().with_context(|| {
        format!("--listen '{listen}' is not IP:PORT; tidemark serve listens on a loopback address such as 127.0.0.1:8080")
    })?;
    if !addr.ip().is_loopback() {
        bail!(
            "--listen {addr} is not a loopback address; tidemark serve has no authentication and listens on 127.0.0.1 or ::1 only (deployments put API Gateway with IAM auth in front of the api function)"
        );
    }
    Ok(addr)
}

/// Serves the API on `listen` for vault `vault`, with `workers` restore-queue loops, until
/// interrupted (Ctrl-C or SIGTERM).
pub async fn serve(ctx: &Context, listen: &str, vault: &str, workers: usize) -> Result<()> {
    let addr = loopback(listen)?;
    let vault = s3_url("vault", vault)?;
    let engine = ctx.engine(&vault).await?;
    if engine.queues.restore.is_empty() {
        bail!("queue {} does not exist; run `tidemark init --local` to create it", ctx.names.restore_queue);
    }
    let targets = ctx.targets(&engine);
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
    let local = listener.local_addr()?;
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for i in 0..workers.max(1) {
        let (engine, targets, stop) = (engine.clone(), targets.clone(), stop.clone());
        let owner = format!("serve-{}-{i}", std::process::id());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                // A failing queue (the local stack restarting) must not end the server: the
                // loop waits a moment and goes on, and the messages it held come back.
                if let Err(e) = work_restore_queue(&engine, targets.as_ref(), &owner, &stop).await {
                    tracing::warn!(error = %e, "restore queue loop failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }));
    }
    eprintln!("tidemark serve: listening on http://{local} for vault {}, with {} restore workers", vault.bucket, workers.max(1));
    println!("{}", serde_json::json!({"listening": format!("http://{local}"), "vault": vault.bucket}));
    let served = tidemark_api::serve(listener, ApiState::new(engine, targets), shutdown()).await;
    stop.store(true, Ordering::SeqCst);
    for l in loops {
        let _ = l.await;
    }
    served.context("serving the API")
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let terminated = async {
        match term.as_mut() {
            Some(t) => {
                t.recv().await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
}

#[cfg(test)]
mod tests {
    use super::loopback;

    #[test]
    fn only_loopback_addresses_are_served() {
        assert_eq!(loopback("127.0.0.1:8080").unwrap().port(), 8080);
        assert!(loopback("[::1]:0").is_ok());
        for (listen, says) in [
            ("0.0.0.0:8080", "is not a loopback address"),
            ("192.168.1.10:8080", "is not a loopback address"),
            ("[::]:8080", "is not a loopback address"),
            ("localhost:8080", "is not IP:PORT"),
            ("8080", "is not IP:PORT"),
        ] {
            let e = format!("{:#}", loopback(listen).unwrap_err());
            assert!(e.contains(says), "{listen}: {e}");
        }
    }
}
