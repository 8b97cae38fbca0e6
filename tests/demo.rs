//! `make demo`: starts the local stack, protects a 2,000-object bucket, changes it, and restores
//! it as of two times, comparing every object and its metadata with the source.

use std::process::ExitCode;

use tidemark_e2e::{run, Scenario};

#[tokio::main]
async fn main() -> ExitCode {
    let say = |s: &str| println!("==> {s}");
    say("starting the local stack (moto server on a free loopback port)");
    let moto = match tidemark_testkit::harness::start_moto() {
        Ok(m) => m,
        Err(e) => {
            eprintln!("demo: cannot start the local stack: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let sc = Scenario { objects: 2000, prefixes: 12, large: 6, workers: 4, seed: 7 };
    match run(&moto.endpoint, &sc, say).await {
        Ok(summary) => {
            println!("\n---- summary ----");
            for l in &summary.lines {
                println!("{l}");
            }
            if summary.mismatches.is_empty() {
                println!(
                    "every object matched its source byte for byte, with content type, metadata, Cache-Control, Content-Encoding and tags"
                );
                ExitCode::SUCCESS
            } else {
                println!("MISMATCHES:");
                for m in &summary.mismatches {
                    println!("  {m}");
                }
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
