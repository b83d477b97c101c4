//! The queue runner: picks due messages, delivers their pending recipients (local ones to the
//! store over LMTP on `run/lmtp.sock`, remote ones to their departmental route over SMTP),
//! records each result durably, retries with exponential backoff, sends delay, failure and
//! success DSNs, and removes finished messages.
//!
//! Remote domains without a route go to their MX hosts ([`crate::mx`]) on
//! `router.remote_smtp_port`, with opportunistic STARTTLS.
//!
//! Connections are reused: finished LMTP connections to the store and SMTP connections to a
//! destination (host, address, port, TLS policy, AUTH user) wait in a small pool
//! ([`POOL_IDLE`], at most `delivery_concurrency` each) for the next message, as Postfix's
//! connection cache does; a pooled connection is checked for EOF before use, and a
//! transaction that fails on a reused connection before the message was sent is retried
//! once on a fresh one. When the store's LHLO advertises `XDEDUP`, the MAIL command carries
//! `XDEDUP=<queue id>` so that a redelivery after a crash is not stored twice.
//!
//! What it is not: no recipient callouts (`callout`), no DNS (`mx`).
//!
//! Invariants:
//! - A recipient's final state (delivered/failed) is appended to the status log (fdatasync)
//!   before the message can be removed (except local deliveries that finish a message and that
//!   the store took under `XDEDUP=<queue id>`: a crash then redelivers, and the store keeps one
//!   copy); a crash between a downstream 250 and that append
//!   redelivers that recipient once (never a loss; the store drops the copy when it
//!   advertised XDEDUP, a remote SMTP server may keep it).
//! - A report (DSN) is queued before the results that caused it are logged, so a crash can
//!   duplicate a report but never lose one. Reports are never sent for the null sender or
//!   for reports themselves, and honour NOTIFY (RFC 3461).
//! - Retry delay for attempt n: `retry_min * 2^(n-1)`, capped at `retry_max`; a destination
//!   whose servers could not be reached is not tried again by other messages before
//!   `retry_min` has passed (per-destination backoff).
//! - At most `delivery_concurrency` messages are in delivery at once; a message is never
//!   delivered by two tasks at the same time (the `busy` flag).

use crate::client::{Client, ClientError, Outcome};
use crate::dsn::{Action, DsnRcpt};
use crate::queue::{EnvRecipient, Envelope, LogRecord, MessageState, Queue, QueueError, Queued, RcptState};
use crate::resolve::{Target, resolve_local, route_for};
use crate::{Live, Stats};
use crate::{now_unix, rfc2822_now};
use hermes_core::config::{Config, Route, RouteTls};
use hermes_core::directory::Directory;
use hermes_core::paths::DataDir;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

/// Connecting to a downstream server: RFC 5321 suggests minutes; a dead host should not hold
/// a delivery slot that long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The runner re-checks the queue at least this often (held/flushed state, clock jumps).
const IDLE_TICK: Duration = Duration::from_secs(30);
/// How long a finished connection waits in the pool for the next message (Postfix caches
/// SMTP connections for 2 s by default; LMTP to our own store is cheap to keep).
pub const POOL_IDLE: Duration = Duration::from_secs(5);
/// A pooled connection is not reused after this age (Postfix's smtp_connection_reuse_time_limit).
pub const POOL_MAX_AGE: Duration = Duration::from_secs(300);

/// An idle connection: the client, when it was opened, when it went idle.
struct Pooled {
    client: Client,
    opened: Instant,
    idle_since: Instant,
}

/// Idle connections by destination key.
#[derive(Default)]
struct Pool {
    idle: HashMap<String, Vec<Pooled>>,
}

impl Pool {
    /// The freshest usable connection for `key`; stale ones are closed.
    fn take(&mut self, key: &str) -> Option<(Client, Instant)> {
        let list = self.idle.get_mut(key)?;
        while let Some(p) = list.pop() {
            if p.idle_since.elapsed() < POOL_IDLE && p.opened.elapsed() < POOL_MAX_AGE {
                return Some((p.client, p.opened));
            }
            tokio::spawn(p.client.quit());
        }
        None
    }

    fn put(&mut self, key: String, client: Client, opened: Instant, max: usize) {
        let list = self.idle.entry(key).or_default();
        if list.len() >= max || opened.elapsed() >= POOL_MAX_AGE {
            tokio::spawn(client.quit());
            return;
        }
        list.push(Pooled { client, opened, idle_since: Instant::now() });
    }

    /// Closes connections idle too long (or all of them).
    fn sweep(&mut self, all: bool) {
        for list in self.idle.values_mut() {
            let (keep, old): (Vec<_>, Vec<_>) =
                std::mem::take(list).into_iter().partition(|p| !all && p.idle_since.elapsed() < POOL_IDLE);
            *list = keep;
            for p in old {
                tokio::spawn(p.client.quit());
            }
        }
        self.idle.retain(|_, l| !l.is_empty());
    }
}

const LMTP_KEY: &str = "lmtp";

/// One message in the runner's index.
#[derive(Debug, Clone)]
pub struct Entry {
    pub envelope: Arc<Envelope>,
    pub state: MessageState,
    pub busy: bool,
}

/// What `hermes queue list` shows per message.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub id: String,
    pub from: String,
    pub size: u64,
    pub arrival: i64,
    pub recipients: usize,
    pub pending: usize,
    pub attempts: u32,
    pub next_retry: i64,
    pub hold: bool,
    pub last_reply: String,
}

pub struct Runner {
    live: Arc<Live>,
    stats: Arc<Stats>,
    data: DataDir,
    directory: Directory,
    queue: Arc<Queue>,
    index: Mutex<BTreeMap<String, Entry>>,
    wake: Notify,
    dest_backoff: Mutex<HashMap<String, i64>>,
    /// `None` when no resolver could be configured (remote mail is then deferred).
    mx: RwLock<Option<Arc<crate::mx::Mx>>>,
    pool: Mutex<Pool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Runner {
    pub fn new(
        live: Arc<Live>,
        stats: Arc<Stats>,
        data: DataDir,
        directory: Directory,
        queue: Arc<Queue>,
        recovered: Vec<Queued>,
    ) -> Arc<Runner> {
        let config = live.config();
        let mut index = BTreeMap::new();
        for q in recovered {
            if q.state.is_done() {
                // Finished before a crash, not yet removed: its results are durable, remove it now.
                if let Err(e) = queue.remove_finished(&q.envelope.id) {
                    tracing::warn!(id = %q.envelope.id, error = %e, "cannot remove finished message");
                }
                continue;
            }
            index.insert(q.envelope.id.clone(), Entry { envelope: Arc::new(q.envelope), state: q.state, busy: false });
        }
        Arc::new(Runner {
            mx: RwLock::new(make_mx(&config.router.nameservers)),
            pool: Mutex::new(Pool::default()),
            live,
            stats,
            data,
            directory,
            queue,
            index: Mutex::new(index),
            wake: Notify::new(),
            dest_backoff: Mutex::new(HashMap::new()),
        })
    }

    fn config(&self) -> Arc<Config> {
        self.live.config()
    }

    /// Messages in the queue (the runner's index).
    pub fn queue_size(&self) -> usize {
        lock(&self.index).len()
    }

    /// After a reload: a new resolver when the nameservers changed, and pooled connections
    /// closed (routes, TLS policy or credentials may have changed).
    pub fn reconfigure(&self, nameservers_changed: bool) {
        if nameservers_changed {
            let ns = self.config().router.nameservers.clone();
            *self.mx.write().unwrap_or_else(|e| e.into_inner()) = make_mx(&ns);
        }
        lock(&self.pool).sweep(true);
        lock(&self.dest_backoff).clear();
        self.wake.notify_one();
    }

    /// A newly queued message: deliver it now.
    pub fn add(&self, envelope: Envelope) {
        let n = envelope.recipients.len();
        lock(&self.index).insert(
            envelope.id.clone(),
            Entry { envelope: Arc::new(envelope), state: MessageState::new(n), busy: false },
        );
        self.wake.notify_one();
    }

    pub fn summaries(&self) -> Vec<Summary> {
        lock(&self.index).values().map(summary_of).collect()
    }

    pub fn show(&self, id: &str) -> Option<Entry> {
        lock(&self.index).get(id).cloned()
    }

    /// Makes `id` (or every message) due now and forgets destination backoff.
    pub fn flush(&self, id: Option<&str>) -> usize {
        let mut n = 0;
        for (k, e) in lock(&self.index).iter_mut() {
            if id.is_none_or(|id| id == k) && !e.state.hold {
                e.state.next_retry = 0;
                n += 1;
            }
        }
        lock(&self.dest_backoff).clear();
        self.wake.notify_one();
        n
    }

    /// Holds or releases a message (durably).
    pub async fn hold(&self, id: &str, on: bool) -> Result<(), QueueError> {
        if !lock(&self.index).contains_key(id) {
            return Err(QueueError::NotFound(id.to_string()));
        }
        let q = self.queue.clone();
        let idc = id.to_string();
        tokio::task::spawn_blocking(move || q.append(&idc, &[LogRecord::Hold { on }]))
            .await
            .map_err(|e| QueueError::Io(std::io::Error::other(e)))??;
        if let Some(e) = lock(&self.index).get_mut(id) {
            e.state.hold = on;
            if !on {
                e.state.next_retry = 0;
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    /// Deletes a message without a report. Refused while it is being delivered.
    pub async fn delete(&self, id: &str) -> Result<(), QueueError> {
        {
            let mut idx = lock(&self.index);
            match idx.get_mut(id) {
                None => return Err(QueueError::NotFound(id.to_string())),
                Some(e) if e.busy => {
                    return Err(QueueError::Io(std::io::Error::other("message is being delivered; try again")));
                }
                Some(e) => e.busy = true,
            }
        }
        let q = self.queue.clone();
        let idc = id.to_string();
        let r = tokio::task::spawn_blocking(move || q.remove(&idc))
            .await
            .map_err(|e| QueueError::Io(std::io::Error::other(e)))?;
        let mut idx = lock(&self.index);
        match r {
            Ok(()) => {
                idx.remove(id);
                tracing::info!(id = %id, "message deleted by admin");
                Ok(())
            }
            Err(e) => {
                if let Some(en) = idx.get_mut(id) {
                    en.busy = false;
                }
                Err(e)
            }
        }
    }

    /// Runs until `shutdown` turns true, then waits (bounded) for deliveries in flight.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.config().router.delivery_concurrency));
        let mut tasks = JoinSet::new();
        loop {
            if *shutdown.borrow() {
                break;
            }
            let now = now_unix();
            lock(&self.pool).sweep(false);
            let mut next_due: Option<i64> = None;
            let free = slots.available_permits();
            let due: Vec<String> = {
                let idx = lock(&self.index);
                let mut due = Vec::new();
                for (id, e) in idx.iter() {
                    if e.busy || e.state.hold || e.state.is_done() {
                        continue;
                    }
                    if e.state.next_retry <= now {
                        if due.len() < free {
                            due.push(id.clone());
                        }
                    } else {
                        next_due = Some(next_due.map_or(e.state.next_retry, |n: i64| n.min(e.state.next_retry)));
                    }
                }
                due
            };
            for id in due {
                let Ok(permit) = slots.clone().try_acquire_owned() else { break };
                if let Some(e) = lock(&self.index).get_mut(&id) {
                    e.busy = true;
                }
                let me = self.clone();
                tasks.spawn(async move {
                    let _permit = permit;
                    me.deliver_one(&id).await;
                });
            }
            let sleep = match next_due {
                Some(t) => Duration::from_secs((t - now).clamp(1, IDLE_TICK.as_secs() as i64) as u64),
                None => IDLE_TICK,
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => {}
            }
        }
        // Deliveries in flight finish (bounded), so their results are logged.
        let _ =
            tokio::time::timeout(crate::run::DRAIN_TIMEOUT, async { while tasks.join_next().await.is_some() {} }).await;
        lock(&self.pool).sweep(true);
    }

    fn backoff(&self, attempts: u32) -> i64 {
        let config = self.config();
        let r = &config.router;
        let shift = attempts.saturating_sub(1).min(20);
        (r.retry_min_secs.saturating_mul(1u64 << shift)).min(r.retry_max_secs) as i64
    }

    async fn deliver_one(&self, id: &str) {
        let Some(entry) = self.show(id) else { return };
        let env = entry.envelope.clone();
        let q = self.queue.clone();
        let idc = id.to_string();
        let body = match tokio::task::spawn_blocking(move || q.read_message(&idc)).await {
            Ok(Ok(b)) => b,
            other => {
                tracing::error!(id = %id, error = ?other.err(), "cannot read queued message");
                self.finish(id, entry.state, Vec::new(), &[]).await;
                return;
            }
        };
        let mut state = entry.state;
        let pending: Vec<usize> = (0..env.recipients.len()).filter(|&i| !state.rcpts[i].0.is_final()).collect();
        let mut outcomes: Vec<(usize, Outcome)> = Vec::new();
        let local: Vec<usize> = pending.iter().copied().filter(|&i| env.recipients[i].local).collect();
        if !local.is_empty() {
            let (results, dedup) = self.deliver_lmtp(&env, &local, &body).await;
            let remote_pending = pending.len() > local.len();
            // Log successful local deliveries at once, before any slow remote attempt: the
            // window in which a crash causes a duplicate is this one fdatasync. (Failures wait
            // for `finish`, which queues their reports before logging them.)
            let (early, rest): (Vec<_>, Vec<_>) = results.into_iter().partition(|(i, o)| {
                matches!(o, Outcome::Delivered(_)) && !env.recipients[*i].notify.is_some_and(|n| n.success)
            });
            outcomes.extend(rest);
            if !early.is_empty() {
                let now = now_unix();
                let records: Vec<LogRecord> = early
                    .iter()
                    .map(|(i, o)| {
                        let text = match o {
                            Outcome::Delivered(t) | Outcome::Temporary(t) | Outcome::Permanent(t) => t.clone(),
                        };
                        LogRecord::Rcpt { i: *i, state: RcptState::Delivered, reply: text, at: now }
                    })
                    .collect();
                // When these deliveries finish the message and the store holds each copy under
                // XDEDUP=<queue id>, the status log need not be fdatasync'd first: the message
                // is removed next, and if a crash undoes that, the redelivery is answered 250 by
                // the store without a second copy. Otherwise the results are logged durably.
                let finishes_here = dedup && outcomes.is_empty() && !remote_pending;
                let logged = if finishes_here {
                    Ok(Ok(()))
                } else {
                    let q = self.queue.clone();
                    let idc = id.to_string();
                    let recs = records.clone();
                    tokio::task::spawn_blocking(move || q.append(&idc, &recs)).await
                };
                match logged {
                    Ok(Ok(())) => {
                        Stats::add(&self.stats.delivered, early.len() as u64);
                        for (r, (i, _)) in records.iter().zip(&early) {
                            tracing::info!(id = %id, rcpt = %env.recipients[*i].address, state = "delivered", "delivery attempt");
                            state.apply(r);
                        }
                    }
                    _ => outcomes.extend(early),
                }
            }
        }
        // Forwarded copies of a foreign sender's mail leave with an SRS sender.
        let sender_domain = env.from.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        let foreign_sender = !env.from.is_empty() && !self.directory.has_domain(sender_domain).unwrap_or(true);
        let mut by_domain: BTreeMap<(String, bool), Vec<usize>> = BTreeMap::new();
        for &i in pending.iter().filter(|&&i| !env.recipients[i].local) {
            let r = &env.recipients[i];
            let domain = r.address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
            let forwarded = foreign_sender && !r.original.eq_ignore_ascii_case(&r.address);
            by_domain.entry((domain, forwarded)).or_default().push(i);
        }
        for ((domain, forwarded), idxs) in by_domain {
            let from = if forwarded {
                self.live.srs().forward(&env.from).unwrap_or_else(|| env.from.clone())
            } else {
                env.from.clone()
            };
            let blocked = lock(&self.dest_backoff).get(&domain).is_some_and(|t| *t > now_unix());
            if blocked {
                outcomes.extend(
                    idxs.iter()
                        .map(|&i| (i, Outcome::Temporary("4.4.1 destination recently unreachable; deferred".into()))),
                );
                continue;
            }
            let config = self.config();
            let res = match route_for(&config, &domain) {
                Some(route) => self.deliver_route(route, &from, &env, &idxs, &body).await,
                None => match self.deliver_mx(&domain, &from, &env, &idxs, &body).await {
                    Err(MxFail::Permanent(text)) => {
                        outcomes.extend(idxs.iter().map(|&i| (i, Outcome::Permanent(text.clone()))));
                        continue;
                    }
                    Err(MxFail::Temporary(e)) => Err(e),
                    Ok(o) => Ok(o),
                },
            };
            match res {
                Ok(o) => {
                    lock(&self.dest_backoff).remove(&domain);
                    outcomes.extend(o);
                }
                Err(e) => {
                    let text = e.to_string();
                    tracing::info!(id = %id, domain = %domain, error = %text, "destination unavailable");
                    lock(&self.dest_backoff).insert(domain, now_unix() + config.router.retry_min_secs as i64);
                    outcomes.extend(idxs.iter().map(|&i| (i, Outcome::Temporary(text.clone()))));
                }
            }
        }
        self.finish(id, state, outcomes, &body).await;
    }

    /// Logs the results, sends reports, reschedules or removes.
    async fn finish(&self, id: &str, mut state: MessageState, outcomes: Vec<(usize, Outcome)>, body: &[u8]) {
        let Some(env) = self.show(id).map(|e| e.envelope) else { return };
        let config = self.config();
        let now = now_unix();
        let mut records = Vec::new();
        let mut failed: Vec<(usize, String)> = Vec::new();
        let mut delivered: Vec<(usize, String)> = Vec::new();
        for (i, o) in outcomes {
            let (st, text) = match o {
                Outcome::Delivered(t) => {
                    delivered.push((i, t.clone()));
                    (RcptState::Delivered, t)
                }
                Outcome::Permanent(t) => {
                    failed.push((i, t.clone()));
                    (RcptState::Failed, t)
                }
                Outcome::Temporary(t) => (RcptState::Deferred, t),
            };
            tracing::info!(id = %id, rcpt = %env.recipients[i].address, state = ?st, reply = %text, "delivery attempt");
            let r = LogRecord::Rcpt { i, state: st, reply: text, at: now };
            state.apply(&r);
            records.push(r);
        }
        let mut delayed: Vec<(usize, String)> = Vec::new();
        if !state.is_done() {
            let age = now - env.arrival;
            if age >= config.router.queue_lifetime_secs as i64 {
                for i in 0..state.rcpts.len() {
                    if !state.rcpts[i].0.is_final() {
                        let text = format!(
                            "4.4.7 message expired after {} days in the queue; last error: {}",
                            age / 86_400,
                            state.rcpts[i].1
                        );
                        failed.push((i, text.clone()));
                        let r = LogRecord::Rcpt { i, state: RcptState::Failed, reply: text, at: now };
                        state.apply(&r);
                        records.push(r);
                    }
                }
            } else {
                let next = now + self.backoff(state.attempts + 1);
                let r = LogRecord::Attempt { at: now, next };
                state.apply(&r);
                records.push(r);
                let warn = config.router.delay_warning_secs;
                if warn > 0 && age >= warn as i64 && !state.delay_notified {
                    for i in 0..state.rcpts.len() {
                        if !state.rcpts[i].0.is_final() {
                            delayed.push((i, state.rcpts[i].1.clone()));
                        }
                    }
                    let r = LogRecord::DelayNotified { at: now };
                    state.apply(&r);
                    records.push(r);
                }
            }
        }
        // Reports first (see the module invariant), then the log.
        let wants = |i: usize, what: Action| -> bool {
            let n = env.recipients[i].notify;
            match (n, what) {
                (Some(n), _) if n.never => false,
                (None, Action::Failed | Action::Delayed) => true,
                (None, Action::Delivered) => false,
                (Some(n), Action::Failed) => n.failure,
                (Some(n), Action::Delayed) => n.delay,
                (Some(n), Action::Delivered) => n.success,
            }
        };
        if !env.from.is_empty() && !env.is_dsn {
            let mut report: Vec<(usize, Action, String)> = Vec::new();
            report.extend(
                failed.iter().filter(|(i, _)| wants(*i, Action::Failed)).map(|(i, t)| (*i, Action::Failed, t.clone())),
            );
            report.extend(
                delayed
                    .iter()
                    .filter(|(i, _)| wants(*i, Action::Delayed))
                    .map(|(i, t)| (*i, Action::Delayed, t.clone())),
            );
            report.extend(
                delivered
                    .iter()
                    .filter(|(i, _)| wants(*i, Action::Delivered))
                    .map(|(i, t)| (*i, Action::Delivered, t.clone())),
            );
            if !report.is_empty()
                && let Err(e) = self.send_report(&env, body, &report).await
            {
                tracing::error!(id = %id, error = %e, "cannot queue delivery report; will retry");
                // Keep the recipients pending so the report is not lost: skip logging now.
                self.release(id, None);
                return;
            }
        }
        if !records.is_empty() {
            let q = self.queue.clone();
            let idc = id.to_string();
            let recs = records.clone();
            match tokio::task::spawn_blocking(move || q.append(&idc, &recs)).await {
                Ok(Ok(())) => {
                    for r in &records {
                        if let LogRecord::Rcpt { state, .. } = r {
                            let counter = match state {
                                RcptState::Delivered => &self.stats.delivered,
                                RcptState::Failed => &self.stats.bounced,
                                _ => &self.stats.deferred,
                            };
                            Stats::add(counter, 1);
                        }
                    }
                }
                other => {
                    tracing::error!(id = %id, error = ?other, "cannot log delivery results; will retry");
                    self.release(id, None);
                    return;
                }
            }
        }
        if state.is_done() {
            let q = self.queue.clone();
            let idc = id.to_string();
            match tokio::task::spawn_blocking(move || q.remove_finished(&idc)).await {
                Ok(Ok(())) => {
                    lock(&self.index).remove(id);
                    tracing::info!(id = %id, "message done");
                }
                other => {
                    tracing::error!(id = %id, error = ?other, "cannot remove finished message");
                    self.release(id, Some(state));
                }
            }
        } else {
            self.release(id, Some(state));
        }
    }

    fn release(&self, id: &str, state: Option<MessageState>) {
        if let Some(e) = lock(&self.index).get_mut(id) {
            if let Some(mut s) = state {
                s.hold = e.state.hold; // a hold set by the admin meanwhile stays
                e.state = s;
            } else {
                e.state.next_retry = now_unix() + self.config().router.retry_min_secs as i64;
            }
            e.busy = false;
        }
    }

    async fn send_report(&self, env: &Envelope, body: &[u8], report: &[(usize, Action, String)]) -> Result<(), String> {
        let id = crate::queue::new_id();
        let rcpts: Vec<DsnRcpt<'_>> = report
            .iter()
            .map(|(i, a, t)| DsnRcpt { rcpt: &env.recipients[*i], action: *a, diagnostic: t.as_str() })
            .collect();
        let arrival = chrono::DateTime::from_timestamp(env.arrival, 0).map(|d| d.to_rfc2822()).unwrap_or_default();
        let config = self.config();
        let bytes = crate::dsn::build(&config.hostname, env, body, &rcpts, &id, &rfc2822_now(), &arrival);
        let to = env.from.clone();
        let dir = self.directory.clone();
        let q = self.queue.clone();
        let hostname = config.hostname.clone();
        let envelope = tokio::task::spawn_blocking(move || -> Result<Envelope, String> {
            let domain = to.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
            let targets = if dir.has_domain(domain).map_err(|e| e.to_string())? {
                resolve_local(&dir, &config, &to).map_err(|e| e.to_string())?.unwrap_or_default()
            } else {
                vec![Target::Remote(to.clone())]
            };
            if targets.is_empty() {
                return Err(format!("report recipient <{to}> does not resolve"));
            }
            let mut e = Envelope {
                id: id.clone(),
                from: String::new(),
                recipients: targets
                    .iter()
                    .map(|t| EnvRecipient {
                        address: t.address().to_string(),
                        original: to.clone(),
                        local: matches!(t, Target::Local(_)),
                        notify: None,
                        orcpt: None,
                    })
                    .collect(),
                ret: None,
                envid: None,
                arrival: now_unix(),
                helo: hostname,
                client: "local".into(),
                auth_user: None,
                smtputf8: false,
                eightbit: true,
                size: 0,
                is_dsn: true,
            };
            q.enqueue(&mut e, &[&bytes]).map_err(|e| e.to_string())?;
            Ok(e)
        })
        .await
        .map_err(|e| e.to_string())?;
        match envelope {
            Ok(e) => {
                tracing::info!(id = %e.id, original = %env.id, to = %env.from, "delivery report queued");
                self.add(e);
                Ok(())
            }
            // A sender address that does not resolve locally cannot be reported to: give up on
            // the report (as Postfix does for an undeliverable bounce), not on the message.
            Err(e) if e.contains("does not resolve") => {
                tracing::warn!(original = %env.id, error = %e, "delivery report dropped");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Delivers to the store; the flag says the store took the message with an XDEDUP token.
    async fn deliver_lmtp(&self, env: &Envelope, idxs: &[usize], body: &[u8]) -> (Vec<(usize, Outcome)>, bool) {
        let all = |o: Outcome| (idxs.iter().map(|&i| (i, o.clone())).collect::<Vec<_>>(), false);
        let config = self.config();
        let rcpts: Vec<(String, String)> =
            idxs.iter().map(|&i| (env.recipients[i].address.clone(), String::new())).collect();
        let mut retried = false;
        loop {
            let pooled = lock(&self.pool).take(LMTP_KEY);
            let (mut c, opened, reused) = match pooled {
                Some((mut c, opened)) => {
                    if !c.alive().await {
                        tokio::spawn(c.quit());
                        continue;
                    }
                    (c, opened, true)
                }
                None => match self.lmtp_connect(&config.hostname).await {
                    Ok(c) => (c, Instant::now(), false),
                    Err(o) => return all(o),
                },
            };
            let mut params = String::new();
            if env.smtputf8 && c.has("SMTPUTF8") {
                params.push_str(" SMTPUTF8");
            }
            if env.eightbit && c.has("8BITMIME") {
                params.push_str(" BODY=8BITMIME");
            }
            // Crash-safe redelivery: the store answers 250 without storing again for a
            // (token, recipient) it already delivered. Queue ids are valid tokens (hex).
            let dedup = c.has("XDEDUP");
            if dedup {
                params.push_str(&format!(" XDEDUP={}", env.id));
            }
            match c.transaction(true, &env.from, &params, &rcpts, body).await {
                Ok(o) => {
                    lock(&self.pool).put(LMTP_KEY.into(), c, opened, config.router.delivery_concurrency);
                    return (idxs.iter().copied().zip(o).collect(), dedup);
                }
                // A pooled connection the store closed meanwhile: nothing was delivered on it.
                Err(e) if reused && !retried && !c.data_sent() => {
                    tracing::debug!(error = %e, "pooled LMTP connection failed; retrying on a new one");
                    retried = true;
                }
                Err(e) => return all(Outcome::Temporary(format!("4.4.2 local mail store: {e}"))),
            }
        }
    }

    async fn lmtp_connect(&self, hostname: &str) -> Result<Client, Outcome> {
        let socket = self.data.lmtp_socket();
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::UnixStream::connect(&socket)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "local store unreachable");
                return Err(Outcome::Temporary("4.4.1 local mail store unreachable".into()));
            }
            Err(_) => return Err(Outcome::Temporary("4.4.1 local mail store: connect timeout".into())),
        };
        let mut c = Client::new(Box::new(stream));
        if let Err(e) = c.hello(hostname, true, true).await {
            return Err(Outcome::Temporary(format!("4.4.2 local mail store: {e}")));
        }
        Ok(c)
    }

    /// SMTP to `domain`'s MX hosts (then their addresses), in order.
    async fn deliver_mx(
        &self,
        domain: &str,
        from: &str,
        env: &Envelope,
        idxs: &[usize],
        body: &[u8],
    ) -> Result<Vec<(usize, Outcome)>, MxFail> {
        let mx = self.mx.read().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(mx) = mx else {
            return Err(MxFail::Temporary(ClientError::Protocol("4.4.3 no DNS resolver configured".into())));
        };
        let hosts = match mx.hosts(domain).await {
            Ok(h) => h,
            Err(crate::mx::MxError::Permanent(t)) => return Err(MxFail::Permanent(t)),
            Err(crate::mx::MxError::Temporary(t)) => return Err(MxFail::Temporary(ClientError::Protocol(t))),
        };
        let port = self.config().router.remote_smtp_port;
        let mut last = ClientError::Protocol(format!("4.4.4 no usable MX host for {domain}"));
        for host in hosts {
            let addrs = match mx.addresses(&host).await {
                Ok(a) => a,
                Err(e) => {
                    last = ClientError::Protocol(e.to_string());
                    continue;
                }
            };
            for ip in addrs {
                match self
                    .smtp_attempt(&host, Some(ip), port, RouteTls::Opportunistic, None, from, env, idxs, body)
                    .await
                {
                    Ok(o) => return Ok(o),
                    Err(e) => {
                        tracing::info!(host = %host, ip = %ip, error = %e, "MX host failed");
                        last = e;
                    }
                }
            }
        }
        Err(MxFail::Temporary(last))
    }

    /// SMTP to a departmental route's hosts, in order. `Err`: no host could take the message.
    async fn deliver_route(
        &self,
        route: &Route,
        from: &str,
        env: &Envelope,
        idxs: &[usize],
        body: &[u8],
    ) -> Result<Vec<(usize, Outcome)>, ClientError> {
        let mut last = ClientError::Protocol("no hosts".into());
        for (host, port) in &route.hosts {
            match self.smtp_attempt(host, None, *port, route.tls, route.auth.as_ref(), from, env, idxs, body).await {
                Ok(o) => return Ok(o),
                Err(e) => {
                    tracing::info!(host = %host, port = *port, error = %e, "route host failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    #[allow(clippy::too_many_arguments, reason = "one delivery attempt's full context; a struct would only rename it")]
    async fn smtp_attempt(
        &self,
        host: &str,
        ip: Option<std::net::IpAddr>,
        port: u16,
        tls: RouteTls,
        auth: Option<&(String, hermes_core::secret::Secret<String>)>,
        from: &str,
        env: &Envelope,
        idxs: &[usize],
        body: &[u8],
    ) -> Result<Vec<(usize, Outcome)>, ClientError> {
        let config = self.config();
        let key = format!("{host}|{ip:?}|{port}|{tls:?}|{}", auth.map(|(u, _)| u.as_str()).unwrap_or(""));
        let mut retried = false;
        loop {
            let pooled = lock(&self.pool).take(&key);
            let (mut c, opened, reused) = match pooled {
                Some((mut c, opened)) => {
                    if !c.alive().await {
                        tokio::spawn(c.quit());
                        continue;
                    }
                    (c, opened, true)
                }
                None => (self.smtp_connect(host, ip, port, tls, auth, &config.hostname).await?, Instant::now(), false),
            };
            match self.smtp_transaction(&mut c, from, env, idxs, body).await {
                Ok(o) => {
                    lock(&self.pool).put(key, c, opened, config.router.delivery_concurrency);
                    return Ok(o);
                }
                Err(e) if reused && !retried && !c.data_sent() => {
                    tracing::debug!(host = %host, error = %e, "pooled SMTP connection failed; retrying on a new one");
                    retried = true;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A new SMTP connection, greeted, with STARTTLS and AUTH as the policy says.
    async fn smtp_connect(
        &self,
        host: &str,
        ip: Option<std::net::IpAddr>,
        port: u16,
        tls: RouteTls,
        auth: Option<&(String, hermes_core::secret::Secret<String>)>,
        helo: &str,
    ) -> Result<Client, ClientError> {
        let connect = async {
            match ip {
                Some(ip) => tokio::net::TcpStream::connect((ip, port)).await,
                None => tokio::net::TcpStream::connect((host, port)).await,
            }
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect).await.map_err(|_| ClientError::Timeout)??;
        let _ = tcp.set_nodelay(true);
        let mut c = Client::new(Box::new(tcp));
        c.hello(helo, false, true).await?;
        if tls != RouteTls::None && c.has("STARTTLS") {
            c = c.starttls(host, helo).await?;
        } else if tls == RouteTls::Required {
            c.quit().await;
            return Err(ClientError::Refused("4.7.4 TLS required by the route but not offered".into()));
        }
        if let Some((user, pw)) = auth {
            use base64::Engine as _;
            let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{}", pw.expose()));
            let r = c.command(&format!("AUTH PLAIN {token}")).await?;
            if r.code != 235 {
                c.quit().await;
                return Err(ClientError::Refused(format!(
                    "authentication at the route failed: {}",
                    crate::client::reply_text(&r)
                )));
            }
        }
        Ok(c)
    }

    /// One message over an open SMTP connection.
    async fn smtp_transaction(
        &self,
        c: &mut Client,
        from: &str,
        env: &Envelope,
        idxs: &[usize],
        body: &[u8],
    ) -> Result<Vec<(usize, Outcome)>, ClientError> {
        let mut params = String::new();
        if env.smtputf8 && c.has("SMTPUTF8") {
            params.push_str(" SMTPUTF8");
        }
        if env.eightbit && c.has("8BITMIME") {
            params.push_str(" BODY=8BITMIME");
        }
        if c.has("SIZE") {
            params.push_str(&format!(" SIZE={}", body.len()));
        }
        let dsn = c.has("DSN");
        if dsn {
            if let Some(ret) = &env.ret {
                params.push_str(&format!(" RET={ret}"));
            }
            if let Some(envid) = &env.envid {
                params.push_str(&format!(" ENVID={}", hermes_proto::smtp::command::xtext_encode(envid)));
            }
        }
        let rcpts: Vec<(String, String)> = idxs
            .iter()
            .map(|&i| {
                let r = &env.recipients[i];
                let mut p = String::new();
                if dsn {
                    if let Some(n) = r.notify {
                        let mut items = Vec::new();
                        if n.never {
                            items.push("NEVER");
                        }
                        if n.success {
                            items.push("SUCCESS");
                        }
                        if n.failure {
                            items.push("FAILURE");
                        }
                        if n.delay {
                            items.push("DELAY");
                        }
                        p.push_str(&format!(" NOTIFY={}", items.join(",")));
                    }
                    if let Some(o) = &r.orcpt
                        && let Some((kind, addr)) = o.split_once(';')
                    {
                        p.push_str(&format!(" ORCPT={kind};{}", hermes_proto::smtp::command::xtext_encode(addr)));
                    }
                }
                (r.address.clone(), p)
            })
            .collect();
        let o = c.transaction(false, from, &params, &rcpts, body).await?;
        Ok(idxs.iter().copied().zip(o).collect())
    }
}

fn make_mx(nameservers: &[std::net::SocketAddr]) -> Option<Arc<crate::mx::Mx>> {
    match crate::mx::Mx::new(nameservers) {
        Ok(m) => Some(Arc::new(m)),
        Err(e) => {
            tracing::warn!(error = %e, "no DNS resolver: remote mail without a route will be deferred");
            None
        }
    }
}

/// Why MX delivery failed as a whole.
enum MxFail {
    Permanent(String),
    Temporary(ClientError),
}

/// The `hermes queue list` line for one message.
pub fn summary_of(e: &Entry) -> Summary {
    let env = &e.envelope;
    Summary {
        id: env.id.clone(),
        from: env.from.clone(),
        size: env.size,
        arrival: env.arrival,
        recipients: env.recipients.len(),
        pending: e.state.rcpts.iter().filter(|(s, _)| !s.is_final()).count(),
        attempts: e.state.attempts,
        next_retry: e.state.next_retry,
        hold: e.state.hold,
        last_reply: e
            .state
            .rcpts
            .iter()
            .rev()
            .find(|(s, t)| !s.is_final() && !t.is_empty())
            .map(|(_, t)| t.clone())
            .unwrap_or_default(),
    }
}
