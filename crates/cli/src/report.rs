//! `tidemark status --run ID` and `tidemark report --run ID --html FILE`: a run's steps from its history, as text, JSON or an HTML page with inline SVG.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result};
use chrono::{DateTime, Utc};
use tidemark_core::history::{self, RunHistory, StepState};

use crate::context::{s3_url, Context};

async fn load(ctx: &Context, run: &str, vault: &str) -> Result<RunHistory> {
    let engine = ctx.engine(&s3_url("vault", vault)?).await?;
    history::run_history(&engine, run)
        .await?
        .with_context(|| format!("no seed run or restore run {run} in the control table of vault {}", engine.config.vault_bucket))
}

/// Prints a run's steps in the order they began.
pub async fn status_run(ctx: &Context, run: &str, vault: &str, json: bool) -> Result<()> {
    let h = load(ctx, run, vault).await?;
    if json {
        println!("{}", serde_json::to_string(&h)?);
        return Ok(());
    }
    println!(
        "{} run {} of s3://{}/{}: {} (started {}, finished {})",
        h.kind,
        h.run_id,
        h.source_bucket,
        h.prefix,
        h.state,
        h.started_at.to_rfc3339(),
        h.finished_at.map_or("-".into(), |t| t.to_rfc3339())
    );
    for s in &h.steps {
        println!(
            "  {}  {:<16} {:<8} attempts {}  {}  log {}{}",
            s.started_at.to_rfc3339(),
            s.name,
            format!("{:?}", s.state).to_lowercase(),
            s.attempts,
            s.task_id.as_deref().unwrap_or("-"),
            s.log_id,
            s.error.as_deref().map(|e| format!("  error: {e}")).unwrap_or_default()
        );
    }
    Ok(())
}

/// Writes a run's report page.
pub async fn report(ctx: &Context, run: &str, vault: &str, path: &Path) -> Result<()> {
    let h = load(ctx, run, vault).await?;
    std::fs::write(path, render_html(&h, Utc::now())).with_context(|| format!("writing --html {}", path.display()))?;
    println!("wrote {} ({} steps of {} run {})", path.display(), h.steps.len(), h.kind, h.run_id);
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn colour(s: StepState) -> &'static str {
    match s {
        StepState::Done => "#2e7d32",
        StepState::Running => "#1565c0",
        StepState::Retry => "#f9a825",
        StepState::Failed => "#c62828",
    }
}

/// The page: a summary, a timeline of the steps (one row each, coloured by state), the objects
/// finished per interval over time, and a table of the steps.
pub fn render_html(h: &RunHistory, now: DateTime<Utc>) -> String {
    let start = h.steps.iter().map(|s| s.started_at).min().unwrap_or(h.started_at).min(h.started_at);
    let end = h.steps.iter().map(|s| s.ended_at.unwrap_or(now)).max().unwrap_or(now).max(h.finished_at.unwrap_or(start));
    let span_ms = ((end - start).num_milliseconds()).max(1) as f64;
    let (width, left, row) = (900.0, 140.0, 14.0);
    let x = |t: DateTime<Utc>| left + (t - start).num_milliseconds() as f64 / span_ms * (width - left - 10.0);
    let mut page = String::new();
    let title = format!("{} run {}", h.kind, h.run_id);
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px}}</style></head><body>",
        esc(&title)
    );
    let _ = write!(
        page,
        "<h1>{}</h1><p>s3://{}/{} · state <b>{}</b> · started {} · finished {} · {} steps</p>",
        esc(&title),
        esc(&h.source_bucket),
        esc(&h.prefix),
        esc(&h.state),
        h.started_at.to_rfc3339(),
        h.finished_at.map_or("-".into(), |t| t.to_rfc3339()),
        h.steps.len()
    );
    // The timeline.
    let height = 30.0 + row * h.steps.len() as f64;
    let _ = write!(page, "<h2>Steps</h2><svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\">");
    for (i, s) in h.steps.iter().enumerate() {
        let y = 20.0 + row * i as f64;
        let (x0, x1) = (x(s.started_at), x(s.ended_at.unwrap_or(now)));
        let state = format!("{:?}", s.state).to_lowercase();
        let _ = write!(
            page,
            "<text x=\"0\" y=\"{:.1}\" font-size=\"10\">{}</text><rect class=\"step {state}\" x=\"{x0:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {} {state} attempts {}{}</title></rect>",
            y + 9.0,
            esc(&s.name),
            y,
            (x1 - x0).max(1.0),
            row - 3.0,
            colour(s.state),
            esc(&s.name),
            esc(s.task_id.as_deref().unwrap_or("")),
            s.attempts,
            s.error.as_deref().map(|e| format!(": {}", esc(e))).unwrap_or_default()
        );
    }
    page.push_str("</svg>");
    // Throughput: objects finished per interval (twenty intervals over the run).
    let buckets = 20usize;
    let mut per = vec![0u64; buckets];
    for s in &h.steps {
        if let (Some(t), Some(n)) = (s.ended_at, s.objects) {
            let i = (((t - start).num_milliseconds() as f64 / span_ms) * buckets as f64) as usize;
            per[i.min(buckets - 1)] += n;
        }
    }
    let peak = per.iter().copied().max().unwrap_or(0).max(1) as f64;
    let interval_s = span_ms / 1000.0 / buckets as f64;
    let (cw, ch) = (width, 160.0);
    let points: Vec<String> = per
        .iter()
        .enumerate()
        .map(|(i, n)| {
            format!(
                "{:.1},{:.1}",
                left + (i as f64 + 0.5) / buckets as f64 * (cw - left - 10.0),
                ch - 20.0 - *n as f64 / peak * (ch - 40.0)
            )
        })
        .collect();
    let _ = write!(
        page,
        "<h2>Throughput</h2><p>Objects finished per {interval_s:.1} s (peak {peak:.0}).</p><svg id=\"throughput\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{cw}\" height=\"{ch}\"><line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#888\"/><polyline fill=\"none\" stroke=\"#1565c0\" stroke-width=\"2\" points=\"{}\"/></svg>",
        ch - 20.0,
        cw - 10.0,
        ch - 20.0,
        points.join(" ")
    );
    // The table.
    page.push_str("<h2>Step records</h2><table><tr><th>started</th><th>ended</th><th>step</th><th>task</th><th>state</th><th>attempts</th><th>objects</th><th>input</th><th>log id</th><th>error</th></tr>");
    for s in &h.steps {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td title=\"sha256 {}\">{}</td><td>{}</td><td>{}</td></tr>",
            s.started_at.to_rfc3339(),
            s.ended_at.map_or("-".into(), |t| t.to_rfc3339()),
            esc(&s.name),
            esc(s.task_id.as_deref().unwrap_or("-")),
            format!("{:?}", s.state).to_lowercase(),
            s.attempts,
            s.objects.map_or("-".into(), |n| n.to_string()),
            s.input_digest,
            esc(&s.input_ref),
            esc(&s.log_id),
            esc(s.error.as_deref().unwrap_or(""))
        );
    }
    page.push_str("</table></body></html>\n");
    page
}
