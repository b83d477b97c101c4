//! The dashboard's rates: every [`SAMPLE_EVERY`] the admin service asks the store and the router
//! for their cumulative counters (`{"op":"stats"}` on `run/store.sock` and `run/router.sock`)
//! and keeps the answers in an in-memory ring covering [`RING_SPAN`] (24 hours). Rates per
//! minute are differences between samples; the charts are server-rendered SVG ([`chart`]).
//!
//! Store stats: `started_at, logins_ok, logins_failed, imap_sessions, pop3_sessions,
//! lmtp_delivered, lmtp_rejected, messages_appended`; router stats: `started_at, accepted,
//! rejected, delivered, deferred, bounced, queue_size, auth_failed`.
//!
//! What it is not: persistent. A restart of the admin service starts an empty ring (the
//! counters themselves live in the services). A restart of a service resets its counters: a
//! sample whose `started_at` differs from the previous one counts from zero, never negative.
//!
//! Invariants: the ring holds at most [`RING_LEN`] samples; each stats request has a short
//! timeout ([`STATS_TIMEOUT`]) so a hung service never delays sampling of the other; a
//! missing or malformed counter reads as absent, never as a panic.

use hermes_core::paths::DataDir;
use maud::{Markup, html};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

pub const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);
pub const RING_SPAN: i64 = 24 * 3600;
pub const RING_LEN: usize = (RING_SPAN / 10) as usize + 1;
pub const STATS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// One service's counters at one moment (`None`: the service did not answer).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    pub started_at: i64,
    pub values: BTreeMap<String, u64>,
}

impl Counters {
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }
}

/// Reads a `stats` answer: every non-negative integer field except `ok`, `started_at`.
pub fn parse_counters(v: &serde_json::Value) -> Option<Counters> {
    let o = v.as_object()?;
    if o.get("ok").and_then(|x| x.as_bool()) != Some(true) {
        return None;
    }
    // The counters are either top-level fields or under "stats".
    let src = o.get("stats").and_then(|s| s.as_object()).unwrap_or(o);
    let started_at = src.get("started_at").and_then(|x| x.as_i64()).unwrap_or(0);
    let values = src
        .iter()
        .filter(|(k, _)| k.as_str() != "ok" && k.as_str() != "started_at" && k.len() <= 64)
        .filter_map(|(k, v)| v.as_u64().map(|n| (k.clone(), n)))
        .take(64)
        .collect();
    Some(Counters { started_at, values })
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sample {
    /// Unix seconds.
    pub at: i64,
    pub store: Option<Counters>,
    pub router: Option<Counters>,
}

/// The ring of samples.
#[derive(Debug, Default)]
pub struct Rates {
    ring: Mutex<VecDeque<Sample>>,
}

impl Rates {
    pub fn push(&self, s: Sample) {
        let mut r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        while r.len() >= RING_LEN {
            r.pop_front();
        }
        r.push_back(s);
    }
    /// The samples taken at or after `since`.
    pub fn since(&self, since: i64) -> Vec<Sample> {
        let r = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        let start = r.partition_point(|s| s.at < since);
        r.range(start..).cloned().collect()
    }
    pub fn len(&self) -> usize {
        self.ring.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Asks both services for their counters now.
pub async fn take_sample(data: &DataDir) -> Sample {
    let req = serde_json::json!({ "op": "stats" });
    let (store_sock, router_sock) = (data.store_socket(), data.router_socket());
    let (s, r) = tokio::join!(
        crate::control::json_request(&store_sock, &req, "store service", STATS_TIMEOUT),
        crate::control::json_request(&router_sock, &req, "router", STATS_TIMEOUT),
    );
    Sample {
        at: chrono::Utc::now().timestamp(),
        store: s.ok().as_ref().and_then(parse_counters),
        router: r.ok().as_ref().and_then(parse_counters),
    }
}

/// Samples every [`SAMPLE_EVERY`] until `shutdown`.
pub async fn sampler(st: std::sync::Arc<crate::state::AppState>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hermes_runtime::shutdown::triggered(&mut shutdown) => return,
        }
        let s = take_sample(&st.data).await;
        st.rates.push(s);
    }
}

pub const ACCEPTED: Series =
    Series { key: "accepted", service: Service::Router, counter: "accepted", label: "accepted", class: "s1" };
pub const DELIVERED: Series =
    Series { key: "delivered", service: Service::Router, counter: "delivered", label: "delivered", class: "s2" };
pub const LOGINS_OK: Series =
    Series { key: "logins_ok", service: Service::Store, counter: "logins_ok", label: "IMAP/POP3 logins", class: "s1" };
pub const LOGINS_FAILED: Series = Series {
    key: "logins_failed",
    service: Service::Store,
    counter: "logins_failed",
    label: "failed logins",
    class: "s3",
};
pub const AUTH_FAILED: Series = Series {
    key: "smtp_auth_failed",
    service: Service::Router,
    counter: "auth_failed",
    label: "failed SMTP AUTH",
    class: "s2",
};
pub const ALL_SERIES: [Series; 5] = [ACCEPTED, DELIVERED, LOGINS_OK, LOGINS_FAILED, AUTH_FAILED];

/// A chart's time range: `1h` (1-minute points), `6h` (5-minute), `24h` (10-minute).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub name: &'static str,
    pub span: i64,
    pub buckets: usize,
}

pub const VIEWS: [View; 3] = [
    View { name: "1h", span: 3600, buckets: 60 },
    View { name: "6h", span: 6 * 3600, buckets: 72 },
    View { name: "24h", span: 24 * 3600, buckets: 144 },
];

impl View {
    /// `None` or empty: 1h; an unknown name: `None`.
    pub fn parse(name: Option<&str>) -> Option<View> {
        match name.unwrap_or("") {
            "" => Some(VIEWS[0]),
            n => VIEWS.iter().copied().find(|v| v.name == n),
        }
    }
}

/// The ring's samples of the last 24 hours plus one taken now (not kept), so a chart shows
/// what happened since the last 10-second sample too.
pub async fn current(st: &crate::state::AppState) -> (i64, Vec<Sample>) {
    let live = take_sample(&st.data).await;
    let now = live.at;
    let mut samples = st.rates.since(now - RING_SPAN);
    if samples.last().is_some_and(|l| l.at >= now) {
        samples.pop();
    }
    samples.push(live);
    (now, samples)
}

/// Which counter of which service.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    /// Name in `/api/rates`.
    pub key: &'static str,
    pub service: Service,
    pub counter: &'static str,
    pub label: &'static str,
    /// CSS class of the line (`s1`..`s3`), also shown in the legend.
    pub class: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Store,
    Router,
}

fn counters(s: &Sample, svc: Service) -> Option<&Counters> {
    match svc {
        Service::Store => s.store.as_ref(),
        Service::Router => s.router.as_ref(),
    }
}

/// Increase of a counter between two samples (a restart in between counts from zero).
fn delta(a: &Sample, b: &Sample, series: &Series) -> Option<u64> {
    let cb = counters(b, series.service)?;
    let vb = cb.get(series.counter);
    match counters(a, series.service) {
        Some(ca) if ca.started_at == cb.started_at => Some(vb.saturating_sub(ca.get(series.counter))),
        // Restarted between the samples: what it counted since it started.
        Some(_) => Some(vb),
        // Not answering at `a`, started since: everything it counted is in this interval.
        None if cb.started_at >= a.at => Some(vb),
        None => None,
    }
}

/// Per-minute averages of `series` over `buckets` equal slices of `[from, to)`. `None`: no
/// data for that slice (the service was down or not yet sampled).
pub fn bucketed(samples: &[Sample], series: &Series, from: i64, to: i64, buckets: usize) -> Vec<Option<f64>> {
    let span = (to - from).max(1) as f64;
    let width = span / buckets.max(1) as f64;
    let mut sum = vec![0u64; buckets];
    let mut secs = vec![0i64; buckets];
    for w in samples.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        if b.at <= from || b.at > to || b.at <= a.at {
            continue;
        }
        let Some(d) = delta(a, b, series) else { continue };
        let i = (((b.at - from) as f64 - 0.001) / width).floor().clamp(0.0, (buckets - 1) as f64) as usize;
        sum[i] = sum[i].saturating_add(d);
        secs[i] += b.at - a.at;
    }
    (0..buckets).map(|i| (secs[i] > 0).then(|| sum[i] as f64 * 60.0 / secs[i] as f64)).collect()
}

/// Total increase of `series` over the samples (for the text alternative).
pub fn total(samples: &[Sample], series: &Series) -> u64 {
    samples.windows(2).filter_map(|w| delta(&w[0], &w[1], series)).sum()
}

fn fmt_rate(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A line chart of per-minute rates as inline SVG, with a legend and a text summary.
pub fn chart(title: &str, samples: &[Sample], series: &[Series], from: i64, to: i64, buckets: usize) -> Markup {
    const W: f64 = 600.0;
    const H: f64 = 160.0;
    const LEFT: f64 = 44.0;
    const BOTTOM: f64 = 20.0;
    let data: Vec<Vec<Option<f64>>> = series.iter().map(|s| bucketed(samples, s, from, to, buckets)).collect();
    let max = data.iter().flatten().flatten().fold(0.0f64, |m, v| m.max(*v));
    let top = if max <= 0.0 { 1.0 } else { nice_ceiling(max) };
    let plot_w = W - LEFT - 8.0;
    let plot_h = H - BOTTOM - 8.0;
    let x = |i: usize| LEFT + plot_w * (i as f64 + 0.5) / buckets.max(1) as f64;
    let y = |v: f64| 8.0 + plot_h * (1.0 - (v / top).clamp(0.0, 1.0));
    let totals: Vec<u64> = series.iter().map(|s| total(samples, s)).collect();
    let summary = series.iter().zip(&totals).map(|(s, t)| format!("{}: {t}", s.label)).collect::<Vec<_>>().join(", ");
    let span_text = human_span(to - from);
    html! {
        figure.chart {
            svg.chart viewBox=(format!("0 0 {W} {H}")) role="img" aria-label=(format!("{title}, per minute, last {span_text}. Totals: {summary}")) {
                title { (title) }
                @for frac in [0.0, 0.5, 1.0] {
                    line.grid x1=(LEFT) x2=(W - 8.0) y1=(format!("{:.1}", y(top * frac))) y2=(format!("{:.1}", y(top * frac))) {}
                    text.axis x=(LEFT - 4.0) y=(format!("{:.1}", y(top * frac) + 4.0)) text-anchor="end" { (fmt_rate(top * frac)) }
                }
                text.axis x=(LEFT) y=(H - 4.0) { "−" (span_text) }
                text.axis x=(W - 8.0) y=(H - 4.0) text-anchor="end" { "now" }
                @for (s, points) in series.iter().zip(&data) {
                    @for run in runs(points) {
                        @if run.len() == 1 {
                            circle class=(s.class) cx=(format!("{:.1}", x(run[0].0))) cy=(format!("{:.1}", y(run[0].1))) r="2" {}
                        } @else {
                            polyline class=(s.class) fill="none" points=(run.iter().map(|(i, v)| format!("{:.1},{:.1}", x(*i), y(*v))).collect::<Vec<_>>().join(" ")) {}
                        }
                    }
                }
            }
            figcaption {
                strong { (title) } " per minute, last " (span_text) ". "
                @for (s, t) in series.iter().zip(&totals) {
                    span.legend { span class=(format!("key {}", s.class)) aria-hidden="true" {} (s.label) ": " strong { (t) } " " }
                }
            }
        }
    }
}

/// Consecutive buckets with data, as (index, value) runs.
fn runs(points: &[Option<f64>]) -> Vec<Vec<(usize, f64)>> {
    let mut out: Vec<Vec<(usize, f64)>> = Vec::new();
    let mut cur = Vec::new();
    for (i, p) in points.iter().enumerate() {
        match p {
            Some(v) => cur.push((i, *v)),
            None if !cur.is_empty() => out.push(std::mem::take(&mut cur)),
            None => {}
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn nice_ceiling(v: f64) -> f64 {
    let exp = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if v <= m * exp {
            return m * exp;
        }
    }
    10.0 * exp
}

pub fn human_span(secs: i64) -> String {
    if secs >= 3600 && secs % 3600 == 0 { format!("{} h", secs / 3600) } else { format!("{} min", secs / 60) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    fn sample(at: i64, started: i64, accepted: u64) -> Sample {
        let mut values = BTreeMap::new();
        values.insert("accepted".to_string(), accepted);
        Sample { at, store: None, router: Some(Counters { started_at: started, values }) }
    }

    const ACC: Series =
        Series { key: "a", service: Service::Router, counter: "accepted", label: "accepted", class: "s1" };

    #[test]
    fn rates_per_minute_and_restarts() {
        let s = vec![sample(0, 1, 0), sample(60, 1, 30), sample(120, 1, 90), sample(180, 2, 6)];
        let b = bucketed(&s, &ACC, 0, 180, 3);
        assert_eq!(b, vec![Some(30.0), Some(60.0), Some(6.0)]);
        assert_eq!(total(&s, &ACC), 96);
        // A gap (router down) is no data, not zero.
        let s = vec![sample(0, 1, 0), Sample { at: 60, ..Default::default() }, sample(120, 1, 10)];
        assert_eq!(bucketed(&s, &ACC, 0, 120, 2), vec![None, None]);
        // Down at one sample, started after it: its counts belong to the next interval.
        let s = vec![Sample { at: 0, ..Default::default() }, sample(60, 30, 7)];
        assert_eq!(total(&s, &ACC), 7);
    }

    #[test]
    fn parses_stats_answers_leniently() {
        let v = serde_json::json!({"ok": true, "started_at": 5, "accepted": 3, "bogus": "x", "neg": -1});
        let c = parse_counters(&v).unwrap();
        assert_eq!((c.started_at, c.get("accepted"), c.values.len()), (5, 3, 1));
        assert!(parse_counters(&serde_json::json!({"ok": false, "error": "unknown op"})).is_none());
        assert!(parse_counters(&serde_json::json!([1, 2])).is_none());
    }

    #[test]
    fn ring_is_bounded() {
        let r = Rates::default();
        for i in 0..(RING_LEN as i64 + 10) {
            r.push(sample(i, 1, 0));
        }
        assert_eq!(r.len(), RING_LEN);
        assert_eq!(r.since(RING_LEN as i64 + 5).len(), 5);
    }

    #[test]
    fn chart_is_svg_with_text() {
        let s = vec![sample(0, 1, 0), sample(60, 1, 30)];
        let m = chart("Messages", &s, &[ACC], 0, 60, 6).into_string();
        assert!(m.contains("<svg") && m.contains("role=\"img\"") && m.contains("accepted: <strong>30</strong>"), "{m}");
    }
}
