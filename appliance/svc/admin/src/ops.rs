//! The admin operations, shared by the HTML pages and the JSON API: each validates its input,
//! performs the change through the directory (or asks the store or supervisor over their
//! sockets), and writes one audit entry. Neither the pages nor the API touch the directory
//! themselves.
//!
//! What it is not: authorisation. Callers pass an [`Actor`] only after the web layer has
//! authenticated the request (session + CSRF, or API token) and, for destructive operations,
//! re-checked the admin's password.
//!
//! Invariants: every change is audited (also when it fails validation or is refused); error
//! text shown to the admin never contains a path or an internal error (those are logged).

use crate::index::{AccountSummary, Page};
use crate::state::AppState;
use hermes_core::directory::{Alias, DirectoryError, MessageQuota};
use hermes_core::secret::Secret;
use hermes_svc_store::quota::undelete::{Entry as RetainedEntry, Filter, Request as StoreRequest, UsageEntry};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// Who asks: the admin and the client address, for the audit log.
#[derive(Debug, Clone)]
pub struct Actor {
    pub admin: String,
    pub peer: IpAddr,
}

/// Why an operation failed, with its HTTP meaning.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// Bad input, with the form field it concerns (shown beside that field).
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error; see the service log")]
    Internal,
}

impl OpError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> OpError {
        OpError::Invalid { field, message: message.into() }
    }
    pub fn status(&self) -> u16 {
        match self {
            OpError::Invalid { .. } => 422,
            OpError::NotFound(_) => 404,
            OpError::Conflict(_) => 409,
            OpError::Unavailable(_) => 503,
            OpError::Internal => 500,
        }
    }
    pub fn field(&self) -> Option<&'static str> {
        match self {
            OpError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

fn dir_error(e: DirectoryError) -> OpError {
    match e {
        DirectoryError::InvalidAddress(a) => OpError::invalid("address", format!("not a valid address: {a}")),
        DirectoryError::InvalidDomain(d) => OpError::invalid("domain", format!("not a valid domain name: {d}")),
        DirectoryError::NoSuchDomain(d) => OpError::NotFound(format!("no such domain: {d}")),
        DirectoryError::DomainExists(d) => OpError::Conflict(format!("domain already exists: {d}")),
        DirectoryError::DomainNotEmpty(d) => OpError::Conflict(format!("domain {d} still has accounts or aliases")),
        DirectoryError::NoSuchAccount(a) => OpError::NotFound(format!("no such account: {a}")),
        DirectoryError::AccountExists(a) => OpError::Conflict(format!("the address is already in use: {a}")),
        DirectoryError::NoSuchAlias(a) => OpError::NotFound(format!("no such alias: {a}")),
        DirectoryError::InvalidTarget(t) => OpError::invalid("targets", format!("not a valid target address: {t}")),
        DirectoryError::EmptyPassword => OpError::invalid("password", "the password must not be empty"),
        DirectoryError::InvalidHash => OpError::invalid("password", "invalid password"),
        e @ (DirectoryError::Io(_) | DirectoryError::Corrupt { .. }) => {
            tracing::error!(error = %e, "directory error");
            OpError::Internal
        }
    }
}

/// Runs blocking directory work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, OpError> + Send + 'static) -> Result<T, OpError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "blocking task failed");
        OpError::Internal
    })?
}

/// Records `result` in the audit log; an audit failure turns success into an error (a change
/// that cannot be audited must not look done: the admin retries or investigates).
async fn audited<T>(
    st: &Arc<AppState>,
    actor: &Actor,
    action: &'static str,
    target: &str,
    result: Result<T, OpError>,
) -> Result<T, OpError> {
    let (ok, detail) = match &result {
        Ok(_) => (true, String::new()),
        Err(e) => (false, e.to_string()),
    };
    let st2 = st.clone();
    let (admin, peer, target_s) = (actor.admin.clone(), actor.peer.to_string(), target.to_string());
    let written =
        tokio::task::spawn_blocking(move || st2.audit.record(&admin, &peer, action, &target_s, ok, &detail)).await;
    match (result, written) {
        (Ok(v), Ok(Ok(()))) => Ok(v),
        (Err(e), _) => Err(e),
        (Ok(_), _) => Err(OpError::Internal),
    }
}

/// [`audited`] for other modules (the queue).
pub async fn audit_result<T>(
    st: &Arc<AppState>,
    actor: &Actor,
    action: &'static str,
    target: &str,
    result: Result<T, OpError>,
) -> Result<T, OpError> {
    audited(st, actor, action, target, result).await
}

/// Longest password accepted for a mail account (as the CLI: bounds the argon2 input).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Shortest new mail password set through the UI.
pub const MIN_PASSWORD_CHARS: usize = 8;

fn check_mail_password(pw: &str) -> Result<(), OpError> {
    if pw.chars().count() < MIN_PASSWORD_CHARS {
        return Err(OpError::invalid("password", format!("at least {MIN_PASSWORD_CHARS} characters")));
    }
    if pw.len() > MAX_PASSWORD_BYTES || pw.contains(['\0', '\r', '\n']) {
        return Err(OpError::invalid("password", "at most 1024 bytes, one line, no NUL"));
    }
    Ok(())
}

/// Parses a size as the CLI does: bytes or a whole number with K, M, G, T (powers of 1024;
/// KiB... also accepted). Fractions and SI units (`1GB`) are refused rather than guessed.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() || num.len() > 20 {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" | "b" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "m" | "MiB" => 20,
        "G" | "g" | "GiB" => 30,
        "T" | "t" | "TiB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// 2G, 500M, 1536K, or bytes: the largest unit that divides evenly (as the CLI prints).
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1u64 << shift && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// Human approximation for usage figures: 1.5 GiB, 12.0 MiB, 300 B.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 { format!("{bytes} B") } else { format!("{v:.1} {}", units[i]) }
}

fn quota_from(text: &str) -> Result<u64, OpError> {
    let q = parse_size(text)
        .ok_or_else(|| OpError::invalid("quota", "a size such as 2G, 500M or 1048576 (powers of 1024)"))?;
    if q == 0 {
        return Err(OpError::invalid("quota", "must be greater than zero"));
    }
    Ok(q)
}

// ---- domains -----------------------------------------------------------------------------

#[derive(Debug, Clone, serde::Serialize)]
pub struct DomainInfo {
    pub domain: String,
    pub accounts: usize,
}

pub async fn list_domains(st: &Arc<AppState>) -> Result<Vec<DomainInfo>, OpError> {
    let st = st.clone();
    blocking(move || {
        let counts = st.index.counts().map_err(dir_error)?;
        Ok(counts.into_iter().map(|(domain, accounts)| DomainInfo { domain, accounts }).collect())
    })
    .await
}

pub async fn add_domain(st: &Arc<AppState>, actor: &Actor, domain: &str) -> Result<String, OpError> {
    let d = domain.trim().to_ascii_lowercase();
    let result = match hermes_core::directory::normalize_domain(&d) {
        None => {
            Err(OpError::invalid("domain", "letters, digits and hyphens in dot-separated labels (IDNs in xn-- form)"))
        }
        Some(d) => {
            let st2 = st.clone();
            blocking(move || st2.directory.add_domain(&d).map(|()| d).map_err(dir_error)).await
        }
    };
    audited(st, actor, "domain.add", &d, result).await
}

pub async fn delete_domain(st: &Arc<AppState>, actor: &Actor, domain: &str) -> Result<(), OpError> {
    let d = domain.to_string();
    let st2 = st.clone();
    let result = blocking(move || {
        if !st2.directory.list_aliases(Some(&d)).map_err(dir_error)?.is_empty() {
            return Err(OpError::Conflict(format!("domain {d} still has aliases; delete them first")));
        }
        st2.directory.remove_domain(&d).map_err(dir_error)
    })
    .await;
    audited(st, actor, "domain.delete", domain, result).await
}

// ---- accounts ----------------------------------------------------------------------------

/// Accounts per page unless the client asks otherwise.
pub const DEFAULT_PER_PAGE: usize = 50;

pub async fn search_accounts(
    st: &Arc<AppState>,
    q: String,
    domain: Option<String>,
    page: usize,
    per_page: usize,
) -> Result<Page, OpError> {
    let st = st.clone();
    blocking(move || st.index.search(&q, domain.as_deref(), page, per_page).map_err(dir_error)).await
}

pub async fn get_account(st: &Arc<AppState>, address: &str) -> Result<AccountSummary, OpError> {
    let st = st.clone();
    let a = address.to_string();
    blocking(move || match st.directory.lookup(&a).map_err(dir_error)? {
        // `lookup` resolves subaddresses; the account page wants the exact address.
        Some(acc) if acc.address.eq_ignore_ascii_case(&a) => Ok(AccountSummary {
            address: acc.address,
            user_id: acc.user_id.to_string(),
            quota_bytes: acc.quota_bytes,
            quota_messages: acc.quota_messages,
            created: acc.created,
        }),
        _ => Err(OpError::NotFound(format!("no such account: {a}"))),
    })
    .await
}

pub async fn create_account(
    st: &Arc<AppState>,
    actor: &Actor,
    address: &str,
    password: Secret<String>,
    quota: &str,
) -> Result<String, OpError> {
    let address = address.trim().to_string();
    let result = async {
        check_mail_password(password.expose())?;
        let quota = if quota.trim().is_empty() { None } else { Some(quota_from(quota)?) };
        let st2 = st.clone();
        let a = address.clone();
        blocking(move || st2.directory.add_account(&a, &password, quota).map(|acc| acc.address).map_err(dir_error))
            .await
    }
    .await;
    audited(st, actor, "account.create", &address, result).await
}

pub async fn set_password(
    st: &Arc<AppState>,
    actor: &Actor,
    address: &str,
    password: Secret<String>,
) -> Result<(), OpError> {
    let result = async {
        check_mail_password(password.expose())?;
        let st2 = st.clone();
        let a = address.to_string();
        blocking(move || st2.directory.set_password(&a, &password).map_err(dir_error)).await
    }
    .await;
    audited(st, actor, "account.password", address, result).await
}

/// Sets the storage quota and, when `messages` is given (a number, `unlimited` or `default`), the
/// RFC 9208 MESSAGE limit. Both are validated before either is written.
pub async fn set_quota(
    st: &Arc<AppState>,
    actor: &Actor,
    address: &str,
    quota: &str,
    messages: Option<&str>,
) -> Result<(u64, MessageQuota), OpError> {
    let result = async {
        let q = quota_from(quota)?;
        let m = match messages.map(str::trim).filter(|m| !m.is_empty()) {
            Some(m) => Some(MessageQuota::parse(m).map_err(|e| OpError::invalid("messages", e))?),
            None => None,
        };
        let st2 = st.clone();
        let a = address.to_string();
        blocking(move || {
            st2.directory.set_quota(&a, q).map_err(dir_error)?;
            let account = match m {
                Some(m) => st2.directory.set_message_quota(&a, m).map_err(dir_error)?,
                None => st2.directory.lookup(&a).map_err(dir_error)?.ok_or_else(|| OpError::NotFound(a.clone()))?,
            };
            Ok((q, account.quota_messages))
        })
        .await
    }
    .await;
    let detail_target = match &result {
        Ok((q, m)) => format!("{address} quota={} messages={m}", format_size(*q)),
        Err(_) => address.to_string(),
    };
    audited(st, actor, "account.quota", &detail_target, result).await
}

pub async fn delete_account(st: &Arc<AppState>, actor: &Actor, address: &str) -> Result<(), OpError> {
    let st2 = st.clone();
    let a = address.to_string();
    let result = blocking(move || st2.directory.remove_account(&a).map(|_| ()).map_err(dir_error)).await;
    audited(st, actor, "account.delete", address, result).await
}

/// Usage of `accounts` from the store service; `Err` when it cannot be asked (shown as n/a).
pub async fn usage(st: &Arc<AppState>, accounts: Vec<String>) -> Result<HashMap<String, UsageEntry>, OpError> {
    if accounts.is_empty() {
        return Ok(HashMap::new());
    }
    let r = crate::control::store_request(&st.data, &StoreRequest::Usage { accounts }, crate::control::REQUEST_TIMEOUT)
        .await
        .map_err(|e| OpError::Unavailable(e.to_string()))?;
    Ok(r.usage.into_iter().map(|u| (u.account.clone(), u)).collect())
}

// ---- aliases -----------------------------------------------------------------------------

/// Every alias and catch-all (or those of one domain), in address order, from the alias index
/// (a change made by the CLI shows at the next call).
pub async fn list_aliases(st: &Arc<AppState>, domain: Option<String>) -> Result<Vec<Alias>, OpError> {
    let st = st.clone();
    blocking(move || st.alias_index.list(domain.as_deref()).map(|all| all.to_vec()).map_err(dir_error)).await
}

/// Aliases per page unless the client asks otherwise.
pub const ALIASES_PER_PAGE: usize = 100;
/// Most aliases one page or API call returns.
pub const MAX_ALIASES_PER_PAGE: usize = 1000;

/// One page of aliases matching a search.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AliasPage {
    /// Aliases matching the search, in all pages.
    pub total: usize,
    pub page: usize,
    pub per_page: usize,
    pub aliases: Vec<Alias>,
}

/// The aliases whose address or a target contains `q` (case-insensitive), in address order,
/// page `page` (from 1) of `per_page` (at most [`MAX_ALIASES_PER_PAGE`]).
pub async fn search_aliases(
    st: &Arc<AppState>,
    q: String,
    domain: Option<String>,
    page: usize,
    per_page: usize,
) -> Result<AliasPage, OpError> {
    let st = st.clone();
    blocking(move || {
        // The index's list is shared (no copy); only the page's aliases are cloned.
        let all = st.alias_index.list(domain.as_deref()).map_err(dir_error)?;
        Ok(page_of(&all, &q, page, per_page))
    })
    .await
}

/// The paging and filtering of [`search_aliases`], over a list in address order.
pub fn page_aliases(all: Vec<Alias>, q: &str, page: usize, per_page: usize) -> AliasPage {
    page_of(&all, q, page, per_page)
}

fn page_of(all: &[Alias], q: &str, page: usize, per_page: usize) -> AliasPage {
    let needle = q.trim().to_ascii_lowercase();
    let per_page = per_page.clamp(1, MAX_ALIASES_PER_PAGE);
    // Addresses are stored lowercased; targets keep the case of their local part.
    let matching: Vec<&Alias> = all
        .iter()
        .filter(|a| {
            needle.is_empty()
                || a.address.contains(&needle)
                || a.targets.iter().any(|t| contains_ignore_ascii_case(t, &needle))
        })
        .collect();
    let total = matching.len();
    // A page past the end is the last one (as in the queue).
    let page = page.clamp(1, total.div_ceil(per_page).max(1));
    let aliases = matching.into_iter().skip((page - 1) * per_page).take(per_page).cloned().collect();
    AliasPage { total, page, per_page, aliases }
}

/// `haystack` contains `needle_lower` (already ASCII-lowercased), ignoring ASCII case, without
/// allocating.
fn contains_ignore_ascii_case(haystack: &str, needle_lower: &str) -> bool {
    let n = needle_lower.as_bytes();
    n.is_empty() || haystack.as_bytes().windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Most targets typed into the form; the directory's own limit is higher (imports).
pub const MAX_FORM_TARGETS: usize = 1000;

pub async fn add_alias(st: &Arc<AppState>, actor: &Actor, address: &str, targets: &str) -> Result<Alias, OpError> {
    let address = address.trim().to_string();
    let list: Vec<String> = targets
        .split([',', '\n', ' ', '\r', '\t'])
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    let result = async {
        if list.is_empty() {
            return Err(OpError::invalid("targets", "at least one target address"));
        }
        if list.len() > MAX_FORM_TARGETS {
            return Err(OpError::invalid("targets", format!("at most {MAX_FORM_TARGETS} targets")));
        }
        let st2 = st.clone();
        let a = address.clone();
        let l = list.clone();
        blocking(move || st2.directory.add_alias(&a, &l).map_err(dir_error)).await
    }
    .await;
    audited(st, actor, "alias.set", &format!("{address} -> {}", list.join(",")), result).await
}

pub async fn delete_alias(st: &Arc<AppState>, actor: &Actor, address: &str) -> Result<(), OpError> {
    let st2 = st.clone();
    let a = address.to_string();
    let result = blocking(move || st2.directory.remove_alias(&a).map(|_| ()).map_err(dir_error)).await;
    audited(st, actor, "alias.delete", address, result).await
}

// ---- undelete ----------------------------------------------------------------------------

/// Parses the undelete form's optional mailbox and dates (YYYY-MM-DD or RFC 3339).
pub fn undelete_filter(mailbox: &str, since: &str, until: &str) -> Result<Filter, OpError> {
    use hermes_svc_store::quota::undelete::parse_time;
    let mailbox = mailbox.trim();
    if mailbox.len() > 1024 {
        return Err(OpError::invalid("mailbox", "at most 1024 bytes"));
    }
    let since = match since.trim() {
        "" => None,
        t => Some(parse_time(t, false).map_err(|_| OpError::invalid("since", "a date (YYYY-MM-DD) or RFC 3339 time"))?),
    };
    let until = match until.trim() {
        "" => None,
        t => Some(parse_time(t, true).map_err(|_| OpError::invalid("until", "a date (YYYY-MM-DD) or RFC 3339 time"))?),
    };
    if let (Some(s), Some(u)) = (since, until)
        && s >= u
    {
        return Err(OpError::invalid("until", "must be after the start"));
    }
    Ok(Filter { mailbox: (!mailbox.is_empty()).then(|| mailbox.to_string()), since, until })
}

pub async fn undelete_list(st: &Arc<AppState>, account: &str, filter: Filter) -> Result<Vec<RetainedEntry>, OpError> {
    let req = StoreRequest::Undelete { account: account.trim().to_string(), filter, list: true };
    let r =
        crate::control::store_request(&st.data, &req, crate::control::REQUEST_TIMEOUT).await.map_err(control_error)?;
    Ok(r.messages)
}

pub async fn undelete_restore(
    st: &Arc<AppState>,
    actor: &Actor,
    account: &str,
    filter: Filter,
) -> Result<Vec<RetainedEntry>, OpError> {
    let req = StoreRequest::Undelete { account: account.trim().to_string(), filter: filter.clone(), list: false };
    let result = crate::control::store_request(&st.data, &req, crate::control::RESTORE_TIMEOUT)
        .await
        .map(|r| r.messages)
        .map_err(control_error);
    let target = format!(
        "{} mailbox={} since={} until={}",
        account.trim(),
        filter.mailbox.as_deref().unwrap_or("*"),
        filter.since.map(|t| t.to_string()).unwrap_or_default(),
        filter.until.map(|t| t.to_string()).unwrap_or_default()
    );
    audited(st, actor, "undelete.restore", &target, result).await
}

fn control_error(e: crate::control::ControlError) -> OpError {
    match e {
        crate::control::ControlError::Refused(text) => OpError::Conflict(text),
        e => OpError::Unavailable(e.to_string()),
    }
}

// ---- config apply ------------------------------------------------------------------------

/// Why an apply failed: field errors (each with its path) or an operation error.
#[derive(Debug)]
pub enum ConfigApplyError {
    Invalid(Vec<hermes_core::config::ConfigError>),
    Op(OpError),
}

fn apply_error(e: crate::config_apply::ApplyError) -> ConfigApplyError {
    use crate::config_apply::ApplyError as E;
    match e {
        E::Invalid(v) => ConfigApplyError::Invalid(v),
        E::Unchanged => ConfigApplyError::Op(OpError::Conflict("nothing changed".into())),
        E::TooLarge => ConfigApplyError::Op(OpError::invalid("config", e.to_string())),
        E::NoSuchVersion => ConfigApplyError::Op(OpError::NotFound("no such config version".into())),
        E::Io(e) => {
            tracing::error!(error = %e, "config apply failed");
            ConfigApplyError::Op(OpError::Internal)
        }
    }
}

/// A version written and what each live service said when asked to reload it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Applied {
    pub version: crate::config_apply::Version,
    pub reload: Vec<crate::control::ReloadOutcome>,
}

impl Applied {
    /// Some changed setting takes effect only at a service's next start.
    pub fn restart_required(&self) -> bool {
        self.reload.iter().any(|r| !r.restart_needed.is_empty())
    }
    /// A one-line summary per service for flash messages and the audit log.
    pub fn summary(&self) -> String {
        self.reload
            .iter()
            .map(|r| {
                let mut t = format!("{}: {}", r.service, r.state);
                if !r.restart_needed.is_empty() {
                    t.push_str(&format!(" (at next start: {})", r.restart_needed.join(", ")));
                }
                if !r.errors.is_empty() {
                    t.push_str(&format!(" ({})", r.errors.join("; ")));
                }
                t
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Validates and applies a new `hermes.toml` (`rollback_to`: an earlier version's id instead),
/// then asks the store and the router to reload it (no restart, no dropped connection).
pub async fn apply_config(
    st: &Arc<AppState>,
    actor: &Actor,
    text: Option<String>,
    rollback_to: Option<String>,
) -> Result<Applied, ConfigApplyError> {
    let version = write_config(st, actor, text, rollback_to).await?;
    reload_written(st, actor, version).await
}

/// Asks the services to reload a version just written; remembers and audits what they said.
async fn reload_written(
    st: &Arc<AppState>,
    actor: &Actor,
    version: crate::config_apply::Version,
) -> Result<Applied, ConfigApplyError> {
    let reload = crate::control::reload_all(&st.data).await;
    let applied = Applied { version, reload };
    st.remember_reload(&applied.version.id, &applied.reload);
    let st2 = st.clone();
    let (admin, peer, target, ok, detail) = (
        actor.admin.clone(),
        actor.peer.to_string(),
        applied.version.id.clone(),
        applied.reload.iter().all(|r| r.ok),
        applied.summary(),
    );
    let written =
        tokio::task::spawn_blocking(move || st2.audit.record(&admin, &peer, "config.reload", &target, ok, &detail))
            .await;
    if !matches!(written, Ok(Ok(()))) {
        return Err(ConfigApplyError::Op(OpError::Internal));
    }
    Ok(applied)
}

async fn write_config(
    st: &Arc<AppState>,
    actor: &Actor,
    text: Option<String>,
    rollback_to: Option<String>,
) -> Result<crate::config_apply::Version, ConfigApplyError> {
    let st2 = st.clone();
    let id = rollback_to.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _g = st2.config_write.lock().unwrap_or_else(|p| p.into_inner());
        match (text, id) {
            (_, Some(id)) => crate::config_apply::rollback(&st2.data, &id),
            (Some(t), None) => crate::config_apply::apply(&st2.data, &t),
            (None, None) => Err(crate::config_apply::ApplyError::Unchanged),
        }
    })
    .await
    .map_err(|_| ConfigApplyError::Op(OpError::Internal))
    .and_then(|r| r.map_err(apply_error));
    let (action, ok, target, detail) = match (&result, &rollback_to) {
        (Ok(v), Some(from)) => ("config.rollback", true, format!("{from} -> {}", v.id), String::new()),
        (Ok(v), None) => ("config.apply", true, v.id.clone(), String::new()),
        (Err(ConfigApplyError::Invalid(v)), _) => ("config.apply", false, String::new(), format!("{} errors", v.len())),
        (Err(ConfigApplyError::Op(e)), r) => (
            if r.is_some() { "config.rollback" } else { "config.apply" },
            false,
            r.clone().unwrap_or_default(),
            e.to_string(),
        ),
    };
    let st3 = st.clone();
    let (admin, peer) = (actor.admin.clone(), actor.peer.to_string());
    let written =
        tokio::task::spawn_blocking(move || st3.audit.record(&admin, &peer, action, &target, ok, &detail)).await;
    match (result, written) {
        (Ok(v), Ok(Ok(()))) => Ok(v),
        (Err(e), _) => Err(e),
        (Ok(_), _) => Err(ConfigApplyError::Op(OpError::Internal)),
    }
}

// ---- routes, relay and limits (per-field edits of hermes.toml) ----------------------------

/// Why a per-field settings change failed.
#[derive(Debug)]
pub enum SettingsError {
    /// Field errors, each beside its field.
    Fields(crate::settings::FieldErrors),
    /// The edited file failed the whole-config validation (each with its path).
    Config(Vec<hermes_core::config::ConfigError>),
    Op(OpError),
}

impl SettingsError {
    pub fn status(&self) -> u16 {
        match self {
            SettingsError::Fields(_) | SettingsError::Config(_) => 422,
            SettingsError::Op(e) => e.status(),
        }
    }
    pub fn text(&self) -> String {
        match self {
            SettingsError::Fields(f) => {
                f.0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ")
            }
            SettingsError::Config(c) => c.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "),
            SettingsError::Op(e) => e.to_string(),
        }
    }
}

/// Edits the config in force with `edit` (under the config lock), applies the result through
/// the config-apply path (validated, versioned) and reloads the services. `edit` returning
/// `Ok(None)` means there was nothing to change (404).
pub async fn edit_config(
    st: &Arc<AppState>,
    actor: &Actor,
    action: &'static str,
    target: &str,
    edit: impl FnOnce(&str) -> Result<Option<String>, SettingsError> + Send + 'static,
) -> Result<Applied, SettingsError> {
    let st2 = st.clone();
    let result = tokio::task::spawn_blocking(move || {
        let _g = st2.config_write.lock().unwrap_or_else(|p| p.into_inner());
        let current = crate::config_apply::current(&st2.data).map_err(|e| match apply_error(e) {
            ConfigApplyError::Invalid(v) => SettingsError::Config(v),
            ConfigApplyError::Op(e) => SettingsError::Op(e),
        })?;
        let Some(new) = edit(&current)? else {
            return Err(SettingsError::Op(OpError::NotFound("no such entry".into())));
        };
        crate::config_apply::apply(&st2.data, &new).map_err(|e| match apply_error(e) {
            ConfigApplyError::Invalid(v) => SettingsError::Config(v),
            ConfigApplyError::Op(e) => SettingsError::Op(e),
        })
    })
    .await
    .unwrap_or(Err(SettingsError::Op(OpError::Internal)));
    let (ok, detail) = match &result {
        Ok(v) => (true, format!("version {}", v.id)),
        Err(e) => (false, e.text()),
    };
    let st3 = st.clone();
    let (admin, peer, t) = (actor.admin.clone(), actor.peer.to_string(), target.to_string());
    let written = tokio::task::spawn_blocking(move || st3.audit.record(&admin, &peer, action, &t, ok, &detail)).await;
    if !matches!(written, Ok(Ok(()))) {
        return Err(SettingsError::Op(OpError::Internal));
    }
    reload_written(st, actor, result?).await.map_err(|e| match e {
        ConfigApplyError::Invalid(v) => SettingsError::Config(v),
        ConfigApplyError::Op(e) => SettingsError::Op(e),
    })
}

/// The routes and the relay/limits settings in force.
pub async fn read_settings(
    st: &Arc<AppState>,
) -> Result<(Vec<crate::settings::RouteView>, crate::settings::RelayView), OpError> {
    let st2 = st.clone();
    blocking(move || {
        let text = crate::config_apply::current(&st2.data).map_err(|e| {
            tracing::error!(error = %e, "reading hermes.toml");
            OpError::Internal
        })?;
        crate::settings::read(&text).map_err(|e| OpError::Conflict(format!("hermes.toml does not validate: {e}")))
    })
    .await
}

fn edit_failed(e: String) -> SettingsError {
    SettingsError::Op(OpError::Conflict(e))
}

/// Adds or replaces the route of `input.domain`.
pub async fn save_route(
    st: &Arc<AppState>,
    actor: &Actor,
    input: crate::settings::RouteInput,
) -> Result<Applied, SettingsError> {
    let target = input.domain.trim().to_ascii_lowercase();
    edit_config(st, actor, "route.set", &target, move |text| {
        let (routes, _) = crate::settings::read(text).map_err(edit_failed)?;
        let r = crate::settings::validate_route(&input, &routes).map_err(SettingsError::Fields)?;
        crate::settings::set_route(text, &r).map(Some).map_err(edit_failed)
    })
    .await
}

pub async fn delete_route(st: &Arc<AppState>, actor: &Actor, domain: &str) -> Result<Applied, SettingsError> {
    let d = domain.to_string();
    edit_config(st, actor, "route.delete", domain, move |text| {
        crate::settings::delete_route(text, &d).map_err(edit_failed)
    })
    .await
}

/// Sets the relay networks and the SMTP limits.
pub async fn save_relay(
    st: &Arc<AppState>,
    actor: &Actor,
    input: crate::settings::RelayInput,
) -> Result<Applied, SettingsError> {
    edit_config(st, actor, "relay.set", "", move |text| {
        let v = crate::settings::validate_relay(&input).map_err(SettingsError::Fields)?;
        crate::settings::set_relay(text, &v).map(Some).map_err(edit_failed)
    })
    .await
}

// ---- API tokens and admins -----------------------------------------------------------------

pub async fn create_api_token(
    st: &Arc<AppState>,
    actor: &Actor,
    name: &str,
) -> Result<(crate::admins::ApiToken, Secret<String>), OpError> {
    let st2 = st.clone();
    let (admin, n) = (actor.admin.clone(), name.to_string());
    let result = blocking(move || st2.admins.create_api_token(&admin, &n).map_err(admin_error)).await;
    let target = match &result {
        Ok((t, _)) => format!("{} ({})", t.id, t.name),
        Err(_) => name.to_string(),
    };
    audited(st, actor, "api_token.create", &target, result).await
}

pub async fn revoke_api_token(st: &Arc<AppState>, actor: &Actor, id: &str) -> Result<(), OpError> {
    let st2 = st.clone();
    let i = id.to_string();
    let result = blocking(move || st2.admins.revoke_api_token(&i).map(|_| ()).map_err(admin_error)).await;
    audited(st, actor, "api_token.revoke", id, result).await
}

pub async fn create_admin(
    st: &Arc<AppState>,
    actor: &Actor,
    name: &str,
    password: Secret<String>,
) -> Result<(), OpError> {
    let st2 = st.clone();
    let n = name.trim().to_string();
    let result = blocking(move || st2.admins.create(&n, &password).map_err(admin_error)).await;
    audited(st, actor, "admin.create", name, result).await
}

pub fn admin_error(e: crate::admins::AdminError) -> OpError {
    use crate::admins::AdminError as E;
    match e {
        E::InvalidName => OpError::invalid("name", e.to_string()),
        E::WeakPassword => OpError::invalid("new_password", e.to_string()),
        E::InvalidTokenName => OpError::invalid("name", e.to_string()),
        E::BadSetupToken => OpError::invalid("token", e.to_string()),
        E::Exists(_) | E::SetupDone | E::TooManyTokens => OpError::Conflict(e.to_string()),
        E::NoSuchAdmin(_) | E::NoSuchToken => OpError::NotFound(e.to_string()),
        E::Io(_) | E::Corrupt(_) | E::Hash => {
            tracing::error!(error = %e, "admin storage error");
            OpError::Internal
        }
    }
}

// ---- TLS certificate -----------------------------------------------------------------------

/// Reloads the admin UI's own acceptor from `DATA/tls` and asks the services to reload.
async fn reload_tls(st: &Arc<AppState>) -> Vec<crate::control::ReloadOutcome> {
    let data = st.data.clone();
    let own = tokio::task::spawn_blocking(move || hermes_runtime::tls::load_acceptor(&data)).await;
    let mut out = vec![match own {
        Ok(Ok(a)) => {
            st.set_acceptor(a);
            crate::control::ReloadOutcome {
                service: "admin",
                state: "applied",
                ok: true,
                applied: vec!["tls.certificate".into()],
                restart_needed: Vec::new(),
                errors: Vec::new(),
            }
        }
        Ok(Err(e)) => crate::control::ReloadOutcome {
            service: "admin",
            state: "failed",
            ok: false,
            applied: Vec::new(),
            restart_needed: Vec::new(),
            errors: vec![e.to_string()],
        },
        Err(_) => crate::control::ReloadOutcome {
            service: "admin",
            state: "failed",
            ok: false,
            applied: Vec::new(),
            restart_needed: Vec::new(),
            errors: vec!["internal error".into()],
        },
    }];
    out.extend(crate::control::reload_all(&st.data).await);
    out
}

/// Installs an uploaded chain and key (checked first), then reloads every service's TLS.
pub async fn install_certificate(
    st: &Arc<AppState>,
    actor: &Actor,
    chain: String,
    key: String,
) -> Result<(Vec<crate::cert::CertInfo>, Vec<crate::control::ReloadOutcome>), OpError> {
    let st2 = st.clone();
    let result = blocking(move || {
        let now = chrono::Utc::now().timestamp();
        let infos = crate::cert::check_upload(&chain, &key, now).map_err(|e| OpError::invalid(e.field, e.message))?;
        crate::cert::install(&st2.data, &chain, &key).map_err(|e| {
            tracing::error!(error = %e, "writing the TLS certificate");
            OpError::Internal
        })?;
        Ok(infos)
    })
    .await;
    let target = result.as_ref().map(|i| i[0].subject.clone()).unwrap_or_default();
    let infos = audited(st, actor, "tls.upload", &target, result).await?;
    let reload = reload_tls(st).await;
    Ok((infos, reload))
}

/// Replaces the certificate with a new self-signed one for the configured host name.
pub async fn generate_certificate(
    st: &Arc<AppState>,
    actor: &Actor,
) -> Result<(Vec<crate::cert::CertInfo>, Vec<crate::control::ReloadOutcome>), OpError> {
    let st2 = st.clone();
    let hostname = st.config.hostname.clone();
    let result = blocking(move || {
        let (chain, key) =
            hermes_runtime::tls::generate_self_signed(&hostname, std::time::SystemTime::now()).map_err(|e| {
                tracing::error!(error = %e, "generating a self-signed certificate");
                OpError::Internal
            })?;
        let now = chrono::Utc::now().timestamp();
        let infos = crate::cert::check_upload(&chain, &key, now).map_err(|_| OpError::Internal)?;
        crate::cert::install(&st2.data, &chain, &key).map_err(|e| {
            tracing::error!(error = %e, "writing the TLS certificate");
            OpError::Internal
        })?;
        Ok(infos)
    })
    .await;
    let target = result.as_ref().map(|i| i[0].subject.clone()).unwrap_or_default();
    let infos = audited(st, actor, "tls.generate", &target, result).await?;
    let reload = reload_tls(st).await;
    Ok((infos, reload))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests may unwrap: a panic is the failure report")]
mod tests {
    use super::*;

    /// 2,500 aliases: pages of 100 in address order, search over addresses and targets.
    #[test]
    fn alias_pages() {
        let all: Vec<Alias> = (0..2500)
            .map(|i| Alias {
                address: format!("list{i:04}@example.org"),
                targets: vec![format!("owner{}@Dept.example.org", i % 7)],
                created: 0,
            })
            .collect();
        let p = page_aliases(all.clone(), "", 3, 100);
        assert_eq!((p.total, p.page, p.per_page, p.aliases.len()), (2500, 3, 100, 100));
        assert_eq!(p.aliases[0].address, "list0200@example.org");
        let last = page_aliases(all.clone(), "", 25, 100);
        assert_eq!(last.aliases.last().unwrap().address, "list2499@example.org");
        let past = page_aliases(all.clone(), "", 26, 100);
        assert_eq!((past.page, past.aliases.len()), (25, 100), "a page past the end is the last one");
        let hit = page_aliases(all.clone(), "LIST001", 1, 100);
        assert_eq!(hit.total, 10);
        let by_target = page_aliases(all.clone(), "owner3@dept", 1, 1000);
        assert_eq!(by_target.total, 2500 / 7 + usize::from(2500 % 7 > 3));
        assert_eq!(page_aliases(all, "", 0, 0).per_page, 1, "page and size are clamped");
    }

    #[test]
    fn sizes_as_the_cli() {
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("500M"), Some(500 << 20));
        assert_eq!(parse_size("1024K"), Some(1 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size(" 1048576 "), Some(1 << 20));
        for bad in ["", "1.5G", "1GB", "-1", "G", "99999999999999999999999T", "1 X"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        assert_eq!(format_size(2 << 30), "2G");
        assert_eq!(format_size(1536 << 10), "1536K");
        assert_eq!(format_size(1000), "1000");
        assert_eq!(human(1536 << 20), "1.5 GiB");
    }

    #[test]
    fn undelete_filters() {
        let f = undelete_filter("INBOX", "2025-01-01", "2025-01-02").unwrap();
        assert_eq!(f.mailbox.as_deref(), Some("INBOX"));
        assert_eq!(undelete_filter("", "2025-01-02", "2025-01-01").unwrap_err().field(), Some("until"));
        assert_eq!(undelete_filter("", "yesterday", "").unwrap_err().field(), Some("since"));
        assert_eq!(undelete_filter("", "", "").unwrap(), Filter::default());
    }
}
