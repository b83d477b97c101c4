//! Structured logs: one JSON object per line on stderr, which the supervisor collects.
//!
//! Each line has `ts` (RFC 3339, UTC, microseconds), `level`, `service`, `target`, `msg`, the
//! fields of the enclosing spans (outermost first, e.g. `session`, `peer`) and the event's own
//! fields; an inner name overrides an outer one. The level filter comes from `HERMES_LOG`
//! (`tracing_subscriber::EnvFilter` syntax, e.g. `info,hermes_store=debug`), default `info`.
//!
//! What it is not: no rotation or shipping here: a service writes stderr; host mode's supervisor
//! also appends to `DATA/log/hermes.log` through [`crate::logfile`].
//!
//! Invariants: a log line is written with one `write_all` on a locked stderr, so lines from
//! different threads never interleave; a field is never longer than [`MAX_FIELD_CHARS`] (a
//! client-supplied string cannot flood the log).

use serde_json::{Map, Value};
use std::io::Write;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber, span};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The environment variable holding the filter.
pub const LOG_ENV: &str = "HERMES_LOG";
/// Longest string field kept, in characters; longer values are cut and marked with `…`.
pub const MAX_FIELD_CHARS: usize = 2048;

/// Installs the global subscriber for `service`. Safe to call twice (the second call does
/// nothing and returns false), so tests may call it freely.
pub fn init_tracing(service: &str) -> bool {
    init_tracing_to(service, None)
}

/// Like [`init_tracing`], and every line also goes to `file` (host mode's supervisor keeps its
/// own lines beside its children's in `DATA/log/hermes.log`).
pub fn init_tracing_to(service: &str, file: Option<std::sync::Arc<crate::logfile::LogFile>>) -> bool {
    let (filter, bad) = match std::env::var(LOG_ENV) {
        Ok(spec) => match EnvFilter::try_new(&spec) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new("info"), Some(format!("{spec:?}: {e}"))),
        },
        Err(_) => (EnvFilter::new("info"), None),
    };
    let ok = tracing_subscriber::registry()
        .with(filter)
        .with(JsonLayer::new(service, move || Box::new(Tee(file.clone())) as Box<dyn Write>))
        .try_init()
        .is_ok();
    if let Some(bad) = bad {
        tracing::warn!(env = LOG_ENV, error = %bad, "invalid log filter; using info");
    }
    ok
}

/// Stderr, and the log file when there is one. `write` takes the whole line at once (the layer
/// writes each line with one `write_all`), so a line reaches both whole.
struct Tee(Option<std::sync::Arc<crate::logfile::LogFile>>);

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().lock().write_all(buf);
        if let Some(f) = &self.0 {
            f.write_line(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON-lines layer; public so tests can capture lines with their own writer.
pub struct JsonLayer<W> {
    service: String,
    make_writer: W,
}

impl<W> JsonLayer<W> {
    pub fn new(service: &str, make_writer: W) -> Self {
        JsonLayer { service: service.to_string(), make_writer }
    }
}

struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

fn bounded(s: &str) -> String {
    match s.char_indices().nth(MAX_FIELD_CHARS) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), Value::String(bounded(&format!("{value:?}"))));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::String(bounded(value)));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().to_string(), Value::String(bounded(&value.to_string())));
    }
}

impl<S, W> Layer<S> for JsonLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: Fn() -> Box<dyn Write> + 'static,
    W: Send + Sync,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        line.insert("ts".into(), Value::String(chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()));
        line.insert("level".into(), Value::String(event.metadata().level().to_string()));
        line.insert("service".into(), Value::String(self.service.clone()));
        line.insert("target".into(), Value::String(event.metadata().target().to_string()));
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for (k, v) in fields {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let mut fields = Map::new();
        event.record(&mut JsonVisitor(&mut fields));
        if let Some(msg) = fields.remove("message") {
            line.insert("msg".into(), msg);
        }
        line.extend(fields);
        let mut bytes = match serde_json::to_vec(&Value::Object(line)) {
            Ok(b) => b,
            Err(_) => return,
        };
        bytes.push(b'\n');
        let mut w = (self.make_writer)();
        let _ = w.write_all(&bytes);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_json_with_service_span_and_event_fields() {
        let buf = Buf::default();
        let b2 = buf.clone();
        let layer = JsonLayer::new("store", move || Box::new(b2.clone()) as Box<dyn Write>);
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("session", session = 7u64, peer = "127.0.0.1:5");
            let _e = span.enter();
            tracing::info!(user = "alice", "login ok");
            tracing::warn!(long = %"x".repeat(5000), "big");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["service"], "store");
        assert_eq!(lines[0]["msg"], "login ok");
        assert_eq!(lines[0]["session"], 7);
        assert_eq!(lines[0]["peer"], "127.0.0.1:5");
        assert_eq!(lines[0]["user"], "alice");
        assert_eq!(lines[0]["level"], "INFO");
        assert!(lines[1]["long"].as_str().unwrap().chars().count() <= MAX_FIELD_CHARS + 1);
    }
}
