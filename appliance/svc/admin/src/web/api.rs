//! The JSON API under `/api/` (documented in `docs/admin-api.md`). Same operations as the pages
//! ([`crate::ops`]), JSON in and out.
//!
//! Authentication: `Authorization: Bearer <token>` (an API token made on the Access page), or
//! the browser session cookie plus `X-CSRF-Token` on non-GET requests ([`super::ApiAuth`]).
//! Destructive calls (`DELETE /api/accounts/{a}`, `DELETE /api/domains/{d}`, config apply and
//! rollback) need
//! `{"password": "<the admin's password>"}` in the body, with a token as with a session.
//!
//! Errors: `{"error": "...", "field": "quota"}` with 400/401/403/404/409/422/429/503.
//!
//! Invariant: handlers only translate; every rule lives in `ops`, shared with the pages.

use super::{ApiAuth, SharedState, St, reauthenticate};
use crate::ops::{self, OpError};
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use hermes_core::secret::Secret;
use serde_json::json;

pub fn router() -> Router<SharedState> {
    Router::new()
        .route("/status", get(status))
        .route("/domains", get(domains).post(domain_add))
        .route("/domains/{domain}", delete(domain_delete))
        .route("/accounts", get(accounts).post(account_create))
        .route("/accounts/{address}", get(account).delete(account_delete))
        .route("/accounts/{address}/password", put(account_password))
        .route("/accounts/{address}/quota", put(account_quota))
        .route("/aliases", get(aliases).post(alias_add))
        .route("/aliases/{address}", delete(alias_delete))
        .route("/undelete", get(undelete_list).post(undelete_restore))
        .route("/routes", get(routes))
        .route("/routes/{domain}", put(route_put).delete(route_delete))
        .route("/relay", get(routes).put(relay_put))
        .route("/queue", get(queue_list))
        .route("/queue/flush", axum::routing::post(queue_flush_all))
        .route("/queue/{id}", get(queue_show).delete(queue_delete))
        .route("/queue/{id}/{op}", axum::routing::post(queue_op))
        .route("/rates", get(rates))
        .route("/certificates", get(certificates).put(certificate_put))
        .route("/certificates/self-signed", axum::routing::post(certificate_generate))
        .route("/logs", get(logs))
        .route("/system", get(system))
        .route("/system/restore", axum::routing::post(system_restore))
        .route("/firmware", get(system))
        .route("/disks", get(disks))
        .route("/disks/selftest", axum::routing::post(disk_selftest))
        .route("/disks/scrub", axum::routing::post(disk_scrub))
        .route("/audit", get(audit))
        .route("/config", get(config).post(config_apply))
        .route("/config/history/{id}", get(config_version))
        .route("/config/history/{id}/rollback", axum::routing::post(config_rollback))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "no such API endpoint", None) })
}

pub fn error_response(status: StatusCode, message: &str, field: Option<&str>) -> Response {
    let mut body = json!({ "error": message });
    if let Some(f) = field {
        body["field"] = json!(f);
    }
    (status, Json(body)).into_response()
}

fn op_error(e: OpError) -> Response {
    error_response(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), &e.to_string(), e.field())
}

fn ok<T: serde::Serialize>(v: T) -> Response {
    Json(v).into_response()
}

/// JSON bodies: a malformed one is a 400 with the parser's message (no internals in it).
pub struct Body<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Response;
    async fn from_request(req: axum::extract::Request, st: &S) -> Result<Self, Response> {
        match Json::<T>::from_request(req, st).await {
            Ok(Json(v)) => Ok(Body(v)),
            Err(e) => Err(error_response(StatusCode::BAD_REQUEST, &e.body_text(), None)),
        }
    }
}

async fn status(ApiAuth(_): ApiAuth, st: St) -> Response {
    let supervisor = crate::control::supervisor_status(&st.data).await;
    let domains = ops::list_domains(&st).await;
    let cert = crate::cert::read_validity(&st.data.tls_cert());
    ok(json!({
        "services": supervisor.as_ref().map(|s| json!(s.services)).unwrap_or(json!(null)),
        "services_error": supervisor.as_ref().err().map(|e| e.to_string()),
        "domains": domains.as_ref().map(|d| d.len()).ok(),
        "accounts": domains.as_ref().map(|d| d.iter().map(|x| x.accounts).sum::<usize>()).ok(),
        "certificate": cert.map(|v| json!({"not_before": v.not_before, "not_after": v.not_after})),
    }))
}

async fn domains(ApiAuth(_): ApiAuth, st: St) -> Response {
    match ops::list_domains(&st).await {
        Ok(d) => ok(d),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainBody {
    domain: String,
}

async fn domain_add(ApiAuth(actor): ApiAuth, st: St, Body(b): Body<DomainBody>) -> Response {
    match ops::add_domain(&st, &actor, &b.domain).await {
        Ok(d) => (StatusCode::CREATED, Json(json!({ "domain": d }))).into_response(),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReauthBody {
    password: String,
}

async fn domain_delete(
    ApiAuth(actor): ApiAuth,
    st: St,
    Path(domain): Path<String>,
    Body(b): Body<ReauthBody>,
) -> Response {
    if !reauthenticate(&st, &actor, &b.password).await {
        return error_response(
            StatusCode::FORBIDDEN,
            "re-authentication failed (wrong password or too many attempts)",
            Some("password"),
        );
    }
    match ops::delete_domain(&st, &actor, &domain).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
struct AccountsQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    domain: Option<String>,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    per_page: Option<usize>,
    /// `usage=1`: ask the store for each listed account's usage.
    #[serde(default)]
    usage: Option<String>,
}

async fn accounts(ApiAuth(_): ApiAuth, st: St, Query(q): Query<AccountsQuery>) -> Response {
    let page = match ops::search_accounts(
        &st,
        q.q,
        q.domain,
        q.page.unwrap_or(1),
        q.per_page.unwrap_or(ops::DEFAULT_PER_PAGE),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return op_error(e),
    };
    let mut v = json!(page);
    if q.usage.is_some() {
        let usage = ops::usage(&st, page.accounts.iter().map(|a| a.address.clone()).collect()).await;
        v["usage"] = match usage {
            Ok(u) => json!(u),
            Err(_) => json!(null),
        };
    }
    ok(v)
}

async fn account(ApiAuth(_): ApiAuth, st: St, Path(address): Path<String>) -> Response {
    match ops::get_account(&st, &address).await {
        Ok(a) => {
            let usage = ops::usage(&st, vec![a.address.clone()]).await.ok().and_then(|mut u| u.remove(&a.address));
            ok(json!({ "account": a, "usage": usage }))
        }
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountBody {
    address: String,
    password: String,
    #[serde(default)]
    quota: Option<String>,
}

async fn account_create(ApiAuth(actor): ApiAuth, st: St, Body(b): Body<AccountBody>) -> Response {
    match ops::create_account(&st, &actor, &b.address, Secret::new(b.password), b.quota.as_deref().unwrap_or("")).await
    {
        Ok(a) => (StatusCode::CREATED, Json(json!({ "address": a }))).into_response(),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
}

async fn account_password(
    ApiAuth(actor): ApiAuth,
    st: St,
    Path(address): Path<String>,
    Body(b): Body<PasswordBody>,
) -> Response {
    match ops::set_password(&st, &actor, &address, Secret::new(b.password)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaBody {
    /// `"2G"`, `"500M"` or a number of bytes (string or number).
    quota: serde_json::Value,
    /// The RFC 9208 MESSAGE limit: a number, `"unlimited"` or `"default"`; absent: unchanged.
    #[serde(default)]
    messages: Option<serde_json::Value>,
}

async fn account_quota(
    ApiAuth(actor): ApiAuth,
    st: St,
    Path(address): Path<String>,
    Body(b): Body<QuotaBody>,
) -> Response {
    let text = match &b.quota {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "quota must be a size string or a number of bytes",
                Some("quota"),
            );
        }
    };
    let messages = match &b.messages {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(_) => {
            return error_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                "messages must be a number, \"unlimited\" or \"default\"",
                Some("messages"),
            );
        }
    };
    match ops::set_quota(&st, &actor, &address, &text, messages.as_deref()).await {
        Ok((q, m)) => ok(json!({ "address": address, "quota_bytes": q, "quota_messages": m })),
        Err(e) => op_error(e),
    }
}

async fn account_delete(
    ApiAuth(actor): ApiAuth,
    st: St,
    Path(address): Path<String>,
    Body(b): Body<ReauthBody>,
) -> Response {
    if !reauthenticate(&st, &actor, &b.password).await {
        return error_response(
            StatusCode::FORBIDDEN,
            "re-authentication failed (wrong password or too many attempts)",
            Some("password"),
        );
    }
    match ops::delete_account(&st, &actor, &address).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
struct AliasQuery {
    #[serde(default)]
    domain: Option<String>,
    /// With `page` (or `q` or `per_page`): one page, `{"total","page","per_page","aliases"}`;
    /// without: the whole list, as before.
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    per_page: Option<usize>,
}

async fn aliases(ApiAuth(_): ApiAuth, st: St, Query(q): Query<AliasQuery>) -> Response {
    if q.page.is_some() || q.q.is_some() || q.per_page.is_some() {
        let per_page = q.per_page.unwrap_or(ops::ALIASES_PER_PAGE);
        return match ops::search_aliases(&st, q.q.unwrap_or_default(), q.domain, q.page.unwrap_or(1), per_page).await {
            Ok(p) => ok(p),
            Err(e) => op_error(e),
        };
    }
    match ops::list_aliases(&st, q.domain).await {
        Ok(a) => ok(a),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    address: String,
    targets: Vec<String>,
}

async fn alias_add(ApiAuth(actor): ApiAuth, st: St, Body(b): Body<AliasBody>) -> Response {
    if b.targets.len() > ops::MAX_FORM_TARGETS {
        return error_response(StatusCode::UNPROCESSABLE_ENTITY, "too many targets", Some("targets"));
    }
    match ops::add_alias(&st, &actor, &b.address, &b.targets.join(",")).await {
        Ok(a) => (StatusCode::CREATED, Json(a)).into_response(),
        Err(e) => op_error(e),
    }
}

async fn alias_delete(ApiAuth(actor): ApiAuth, st: St, Path(address): Path<String>) -> Response {
    match ops::delete_alias(&st, &actor, &address).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct UndeleteBody {
    account: String,
    #[serde(default)]
    mailbox: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

async fn undelete_list(ApiAuth(_): ApiAuth, st: St, Query(b): Query<UndeleteBody>) -> Response {
    let filter = match ops::undelete_filter(&b.mailbox, &b.since, &b.until) {
        Ok(f) => f,
        Err(e) => return op_error(e),
    };
    match ops::undelete_list(&st, &b.account, filter).await {
        Ok(m) => ok(json!({ "account": b.account, "messages": m })),
        Err(e) => op_error(e),
    }
}

async fn undelete_restore(ApiAuth(actor): ApiAuth, st: St, Body(b): Body<UndeleteBody>) -> Response {
    let filter = match ops::undelete_filter(&b.mailbox, &b.since, &b.until) {
        Ok(f) => f,
        Err(e) => return op_error(e),
    };
    match ops::undelete_restore(&st, &actor, &b.account, filter).await {
        Ok(m) => ok(json!({ "account": b.account, "restored": m })),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
}

async fn audit(ApiAuth(_): ApiAuth, st: St, Query(q): Query<AuditQuery>) -> Response {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let st2 = st.0.clone();
    match tokio::task::spawn_blocking(move || st2.audit.tail(limit)).await {
        Ok(Ok(entries)) => ok(entries),
        _ => op_error(OpError::Internal),
    }
}

async fn config(ApiAuth(_): ApiAuth, st: St) -> Response {
    let data = st.data.clone();
    match tokio::task::spawn_blocking(move || {
        Ok::<_, crate::config_apply::ApplyError>((
            crate::config_apply::current(&data)?,
            crate::config_apply::list(&data)?,
        ))
    })
    .await
    {
        Ok(Ok((text, history))) => ok(json!({ "config": text, "history": history })),
        _ => op_error(OpError::Internal),
    }
}

pub(crate) fn applied_json(v: &ops::Applied) -> serde_json::Value {
    json!({ "applied": v.version, "reload": v.reload, "restart_required": v.restart_required() })
}

fn apply_result(r: Result<ops::Applied, ops::ConfigApplyError>) -> Response {
    match r {
        Ok(v) => ok(applied_json(&v)),
        Err(ops::ConfigApplyError::Invalid(errors)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": "the configuration is invalid",
                "errors": errors.iter().map(|e| json!({ "path": e.path, "message": e.message })).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        Err(ops::ConfigApplyError::Op(e)) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigBody {
    config: String,
    password: String,
}

async fn config_apply(ApiAuth(actor): ApiAuth, st: St, Body(b): Body<ConfigBody>) -> Response {
    if !reauthenticate(&st, &actor, &b.password).await {
        return error_response(
            StatusCode::FORBIDDEN,
            "re-authentication failed (wrong password or too many attempts)",
            Some("password"),
        );
    }
    apply_result(ops::apply_config(&st, &actor, Some(b.config), None).await)
}

async fn config_version(ApiAuth(_): ApiAuth, st: St, Path(id): Path<String>) -> Response {
    let data = st.data.clone();
    match tokio::task::spawn_blocking(move || {
        Ok::<_, crate::config_apply::ApplyError>((
            crate::config_apply::version_text(&data, &id)?,
            crate::config_apply::current(&data)?,
        ))
    })
    .await
    {
        Ok(Ok((text, current))) => {
            ok(json!({ "config": text, "rollback_diff": crate::config_apply::diff(&current, &text) }))
        }
        Ok(Err(crate::config_apply::ApplyError::NoSuchVersion)) => {
            error_response(StatusCode::NOT_FOUND, "no such config version", None)
        }
        _ => op_error(OpError::Internal),
    }
}

async fn config_rollback(
    ApiAuth(actor): ApiAuth,
    st: St,
    Path(id): Path<String>,
    Body(b): Body<ReauthBody>,
) -> Response {
    if !reauthenticate(&st, &actor, &b.password).await {
        return error_response(
            StatusCode::FORBIDDEN,
            "re-authentication failed (wrong password or too many attempts)",
            Some("password"),
        );
    }
    apply_result(ops::apply_config(&st, &actor, None, Some(id)).await)
}

// ---- routes, relay and limits ----------------------------------------------------------------

fn settings_error(e: ops::SettingsError) -> Response {
    match e {
        ops::SettingsError::Fields(f) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": "invalid input",
                "field": f.0.first().map(|e| e.field),
                "errors": f.0,
            })),
        )
            .into_response(),
        ops::SettingsError::Config(errors) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({
                "error": "the configuration is invalid",
                "errors": errors.iter().map(|e| json!({ "path": e.path, "message": e.message })).collect::<Vec<_>>(),
            })),
        )
            .into_response(),
        ops::SettingsError::Op(e) => op_error(e),
    }
}

async fn routes(ApiAuth(_): ApiAuth, st: St) -> Response {
    match ops::read_settings(&st).await {
        Ok((routes, relay)) => ok(json!({ "routes": routes, "relay": relay })),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteBody {
    hosts: Vec<String>,
    #[serde(default)]
    tls: String,
    #[serde(default)]
    auth_user: String,
    #[serde(default)]
    auth_password: String,
    #[serde(default = "yes")]
    verify_recipients: bool,
}

fn yes() -> bool {
    true
}

async fn route_put(ApiAuth(actor): ApiAuth, st: St, Path(domain): Path<String>, Body(b): Body<RouteBody>) -> Response {
    let input = crate::settings::RouteInput {
        domain,
        hosts: b.hosts,
        tls: b.tls,
        auth_user: b.auth_user,
        auth_password: b.auth_password,
        verify_recipients: b.verify_recipients,
    };
    match ops::save_route(&st, &actor, input).await {
        Ok(v) => ok(applied_json(&v)),
        Err(e) => settings_error(e),
    }
}

async fn route_delete(ApiAuth(actor): ApiAuth, st: St, Path(domain): Path<String>) -> Response {
    match ops::delete_route(&st, &actor, &domain).await {
        Ok(v) => ok(applied_json(&v)),
        Err(ops::SettingsError::Op(OpError::NotFound(_))) => {
            error_response(StatusCode::NOT_FOUND, "no route for that domain", None)
        }
        Err(e) => settings_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayBody {
    relay_networks: Vec<String>,
    max_message_bytes: serde_json::Value,
    max_recipients_mx: serde_json::Value,
    max_recipients_submission: serde_json::Value,
    max_connections_per_ip: serde_json::Value,
}

fn as_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

async fn relay_put(ApiAuth(actor): ApiAuth, st: St, Body(b): Body<RelayBody>) -> Response {
    let input = crate::settings::RelayInput {
        relay_networks: b.relay_networks,
        max_message_bytes: as_text(&b.max_message_bytes),
        max_recipients_mx: as_text(&b.max_recipients_mx),
        max_recipients_submission: as_text(&b.max_recipients_submission),
        max_connections_per_ip: as_text(&b.max_connections_per_ip),
    };
    match ops::save_relay(&st, &actor, input).await {
        Ok(v) => ok(applied_json(&v)),
        Err(e) => settings_error(e),
    }
}

// ---- queue -----------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct QueueQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    page: Option<usize>,
    #[serde(default)]
    per_page: Option<usize>,
}

async fn queue_list(ApiAuth(_): ApiAuth, st: St, Query(q): Query<QueueQuery>) -> Response {
    match crate::queue::list(&st, &q.q, q.page.unwrap_or(1), q.per_page.unwrap_or(crate::queue::DEFAULT_PER_PAGE)).await
    {
        Ok(p) => ok(p),
        Err(e) => op_error(e),
    }
}

async fn queue_show(ApiAuth(_): ApiAuth, st: St, Path(id): Path<String>) -> Response {
    match crate::queue::show(&st, &id).await {
        Ok(d) => ok(d),
        Err(e) => op_error(e),
    }
}

fn count_result(r: Result<usize, OpError>) -> Response {
    match r {
        Ok(n) => ok(json!({ "count": n })),
        Err(e) => op_error(e),
    }
}

async fn queue_flush_all(ApiAuth(actor): ApiAuth, st: St) -> Response {
    count_result(crate::queue::action(&st, &actor, "flush", None).await)
}

async fn queue_delete(ApiAuth(actor): ApiAuth, st: St, Path(id): Path<String>) -> Response {
    count_result(crate::queue::action(&st, &actor, "delete", Some(id)).await)
}

async fn queue_op(ApiAuth(actor): ApiAuth, st: St, Path((id, op)): Path<(String, String)>) -> Response {
    let op = match op.as_str() {
        "flush" => "flush",
        "hold" => "hold",
        "release" => "release",
        _ => return error_response(StatusCode::NOT_FOUND, "no such API endpoint", None),
    };
    count_result(crate::queue::action(&st, &actor, op, Some(id)).await)
}

// ---- rates -----------------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct RatesQuery {
    #[serde(default)]
    range: Option<String>,
}

async fn rates(ApiAuth(_): ApiAuth, st: St, Query(q): Query<RatesQuery>) -> Response {
    let Some(view) = crate::rates::View::parse(q.range.as_deref()) else {
        return error_response(StatusCode::UNPROCESSABLE_ENTITY, "range must be 1h, 6h or 24h", Some("range"));
    };
    let (now, samples) = crate::rates::current(&st).await;
    let from = now - view.span;
    let series: serde_json::Map<String, serde_json::Value> = crate::rates::ALL_SERIES
        .iter()
        .map(|s| {
            (
                s.key.to_string(),
                json!({
                    "label": s.label,
                    "per_minute": crate::rates::bucketed(&samples, s, from, now, view.buckets),
                    "total": crate::rates::total(&samples, s),
                }),
            )
        })
        .collect();
    ok(json!({
        "from": from,
        "to": now,
        "bucket_secs": view.span / view.buckets as i64,
        "series": series,
        "latest": samples.last(),
    }))
}

// ---- TLS, logs, system, disks ----------------------------------------------------------------

async fn certificates(ApiAuth(_): ApiAuth, st: St) -> Response {
    let path = st.data.tls_cert();
    let chain = tokio::task::spawn_blocking(move || crate::cert::read_chain(&path)).await.ok().flatten();
    ok(json!({ "chain": chain }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CertBody {
    chain: String,
    key: String,
}

async fn certificate_put(ApiAuth(actor): ApiAuth, st: St, Body(b): Body<CertBody>) -> Response {
    match ops::install_certificate(&st, &actor, b.chain, b.key).await {
        Ok((chain, reload)) => ok(json!({ "chain": chain, "reload": reload })),
        Err(e) => op_error(e),
    }
}

async fn certificate_generate(ApiAuth(actor): ApiAuth, st: St) -> Response {
    match ops::generate_certificate(&st, &actor).await {
        Ok((chain, reload)) => ok(json!({ "chain": chain, "reload": reload })),
        Err(e) => op_error(e),
    }
}

async fn logs(ApiAuth(_): ApiAuth, st: St, Query(f): Query<crate::logs::Filter>) -> Response {
    match super::more::service_logs(&st, &f).await {
        Ok(p) => ok(p),
        Err(crate::logs::LogError::Invalid { field, message }) => {
            error_response(StatusCode::UNPROCESSABLE_ENTITY, &message, Some(field))
        }
    }
}

async fn system(ApiAuth(_): ApiAuth, st: St) -> Response {
    ok(super::more::system_info(&st).await)
}

async fn system_restore(ApiAuth(actor): ApiAuth, st: St, Body(b): Body<ConfigBody>) -> Response {
    if !reauthenticate(&st, &actor, &b.password).await {
        return error_response(
            StatusCode::FORBIDDEN,
            "re-authentication failed (wrong password or too many attempts)",
            Some("password"),
        );
    }
    apply_result(ops::apply_config(&st, &actor, Some(b.config), None).await)
}

async fn disks(ApiAuth(_): ApiAuth, st: St) -> Response {
    match super::more::hw_request(&st, hermes_hw::api::Request::Status).await {
        Ok(r) => ok(json!({ "status": r.status })),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SelftestBody {
    bay: u16,
    kind: hermes_hw::api::SelftestKind,
}

async fn disk_selftest(ApiAuth(actor): ApiAuth, st: St, Body(b): Body<SelftestBody>) -> Response {
    let req = hermes_hw::api::Request::Selftest { bay: b.bay, kind: b.kind };
    match super::more::hw_action(&st, &actor, req, format!("bay {}", b.bay)).await {
        Ok(m) => ok(json!({ "message": m })),
        Err(e) => op_error(e),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ScrubBody {
    array: String,
    action: hermes_hw::api::ScrubAction,
}

async fn disk_scrub(ApiAuth(actor): ApiAuth, st: St, Body(b): Body<ScrubBody>) -> Response {
    if b.array.is_empty() || b.array.len() > 32 || !b.array.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return error_response(StatusCode::UNPROCESSABLE_ENTITY, "not an array name", Some("array"));
    }
    let req = hermes_hw::api::Request::Scrub { array: b.array.clone(), action: b.action };
    match super::more::hw_action(&st, &actor, req, b.array).await {
        Ok(m) => ok(json!({ "message": m })),
        Err(e) => op_error(e),
    }
}
