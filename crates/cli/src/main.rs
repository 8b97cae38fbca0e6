//! The `tidemark` command: operator commands, and the local runner that drives the Lambda handlers in-process.

mod args;
mod commands;
mod context;
mod runner;

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = args::Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("TIDEMARK_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if let Err(e) = commands::run(cli).await {
        // One line on stderr, as scripts expect; the chain gives the cause.
        let msg = format!("{e:#}").replace('\n', " ");
        eprintln!("tidemark: error: {msg}");
        std::process::exit(1);
    }
}
