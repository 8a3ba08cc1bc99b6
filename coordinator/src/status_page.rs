//! The live status page (`--status-listen`): one read-only HTML page that polls `status.json`,
//! the document `earthcatalog status --json` prints, answered from the scheduler in process.
//! With a shared token set, both ask for it (`Authorization: Bearer …`, or `?token=` so that a
//! browser can open the page).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use earthcatalog_common::rpc::{AUTH_HEADER, bearer};
use serde::Deserialize;

use crate::lease::scheduler::Scheduler;
use crate::lease::service::status_message;
use crate::server::constant_time_eq;

/// The page: markup, style and the script that polls `status.json`.
const PAGE: &str = include_str!("status_page.html");

struct PageState {
    scheduler: Arc<Scheduler>,
    token: Option<String>,
}

#[derive(Deserialize)]
struct TokenParam {
    token: Option<String>,
}

/// Binds `addr` and serves the page until the process ends.
pub async fn serve(
    addr: SocketAddr,
    scheduler: Arc<Scheduler>,
    token: Option<String>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the status page to {addr}"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let state = Arc::new(PageState { scheduler, token });
    let app = Router::new()
        .route("/", get(page))
        .route("/status.json", get(status))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state);
    tracing::info!(addr = %bound, "serving the status page");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::warn!(%error, "the status page stopped");
        }
    });
    Ok(())
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn status(State(state): State<Arc<PageState>>) -> Response {
    let json = crate::status::as_json(&status_message(&state.scheduler));
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(json)).into_response()
}

/// Lets a request through to the page or `status.json` only with the token (when one is set).
async fn require_token(
    State(state): State<Arc<PageState>>,
    Query(q): Query<TokenParam>,
    request: Request,
    next: Next,
) -> Response {
    if authorized(&state, request.headers(), q.token.as_deref()) {
        next.run(request).await
    } else {
        refused()
    }
}

/// Whether no token is set, or the request presents it in the header or the query.
fn authorized(state: &PageState, headers: &HeaderMap, query: Option<&str>) -> bool {
    let Some(expected) = state.token.as_deref() else { return true };
    let from_header = headers
        .get(AUTH_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| constant_time_eq(v.as_bytes(), bearer(expected).as_bytes()));
    let from_query = query.is_some_and(|t| constant_time_eq(t.as_bytes(), expected.as_bytes()));
    from_header || from_query
}

fn refused() -> Response {
    tracing::warn!("refused a status page request without the token");
    (
        StatusCode::UNAUTHORIZED,
        "this status page needs the run's shared token: open it as /?token=…\n",
    )
        .into_response()
}
