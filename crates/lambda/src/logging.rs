//! Structured logs of every function: one JSON object per line, with the fields of every span in scope flattened into it.
//!
//! Each invocation runs inside a span carrying the function's name and the Lambda request id as
//! `log_id` ([`invocation_span`]); the engine opens a span per step (seed start, summarise, plan,
//! task, delta batch, checkpoint, reconcile, compaction, restore plan and task) carrying the run
//! id, the step's name, the task id and the source bucket and prefix. Flattening them into each
//! line (inner spans and the event's own fields win on a clash) lets one CloudWatch Logs Insights
//! query (`filter log_id = "…"` or `filter run_id = "…"`) find every line of an invocation or a
//! run without knowing how deep the span it was logged in sits.

use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The span every invocation of `function` runs in, with the Lambda request id as `log_id`.
pub fn invocation_span(function: &str, request_id: &str) -> tracing::Span {
    tracing::info_span!("invocation", function = %function, log_id = %request_id)
}

/// Runs one invocation of `function`: in its span, and with `request_id` as the log id the run
/// history records ([`tidemark_core::telemetry::with_log_id`]).
pub async fn in_invocation<F: std::future::Future>(function: &str, request_id: &str, f: F) -> F::Output {
    use tracing::Instrument;
    tidemark_core::telemetry::with_log_id(request_id.to_string(), f.instrument(invocation_span(function, request_id))).await
}

/// Sets up the JSON logs of a Lambda function on standard output (which Lambda sends to
/// CloudWatch Logs), filtered by `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else `info`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::registry().with(JsonLines::new(std::io::stdout).with_filter(filter)).init();
}

/// The layer that writes each event as one JSON line to what `make_writer` makes.
pub struct JsonLines<W> {
    make_writer: W,
}

impl<W> JsonLines<W> {
    /// A layer writing to `make_writer` (standard output in Lambda, a buffer in tests).
    pub fn new(make_writer: W) -> Self {
        JsonLines { make_writer }
    }
}

/// A span's fields as JSON, kept in the span's extensions.
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::String(value.into()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), Value::String(format!("{value:?}")));
    }
}

impl<S, W> Layer<S> for JsonLines<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(&mut fields.0));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert("timestamp".into(), Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)));
        line.insert("level".into(), Value::String(event.metadata().level().to_string()));
        line.insert("target".into(), Value::String(event.metadata().target().into()));
        let mut names = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                names.push(Value::String(span.name().into()));
                if let Some(fields) = span.extensions().get::<SpanFields>() {
                    line.extend(fields.0.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        if !names.is_empty() {
            line.insert("spans".into(), Value::Array(names));
        }
        event.record(&mut JsonVisitor(&mut line));
        let mut text = serde_json::to_string(&Value::Object(line)).unwrap_or_default();
        text.push('\n');
        // A log line that cannot be written is dropped: logging must never fail an invocation.
        let _ = self.make_writer.make_writer().write_all(text.as_bytes());
    }
}
