//! The `tidemark` command: operator commands, and the local runner that drives the Lambda handlers in-process.

mod args;
mod commands;
mod context;
mod report;
mod restore;
mod runner;
mod serve;

use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = args::Cli::parse();
    let settings = match tidemark_core::config::settings::Settings::from_lookup(|name| std::env::var(name).ok()) {
        Ok(s) => cli.global.settings(s),
        Err(e) => fail(&anyhow::Error::from(e)),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    if let Err(e) = commands::run(cli, settings).await {
        fail(&e);
    }
}

/// Prints one line on stderr, as scripts expect (the chain gives the cause), and exits non-zero.
fn fail(e: &anyhow::Error) -> ! {
    eprintln!("tidemark: error: {}", format!("{e:#}").replace('\n', " "));
    std::process::exit(1);
}
