//! Runs a scenario and prints the report as JSON, the way `tidemark simulate --json` does, with the
//! wall time on stderr; `--report FILE.html` also writes the HTML report.
//!
//! `cargo run -p tidemark-sim --release --example simulate -- tests/scenarios/reference.toml`

use std::path::PathBuf;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut scenario = None;
    let mut html = None;
    let mut seed = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--report" => html = args.next().map(PathBuf::from),
            "--seed" => seed = args.next().and_then(|s| s.parse().ok()),
            _ => scenario = Some(PathBuf::from(arg)),
        }
    }
    let Some(scenario) = scenario else {
        eprintln!("usage: simulate SCENARIO.toml [--seed N] [--report FILE.html]");
        std::process::exit(2);
    };
    let started = Instant::now();
    match tidemark_sim::run_scenario_file(&scenario, seed) {
        Ok(report) => {
            eprintln!("simulated in {:.1} s", started.elapsed().as_secs_f64());
            println!("{}", serde_json::to_string_pretty(&report).expect("a report always serialises"));
            if let Some(path) = html {
                if let Err(e) = std::fs::write(&path, tidemark_sim::render_html(&report)) {
                    eprintln!("cannot write {}: {e}", path.display());
                    std::process::exit(1);
                }
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
