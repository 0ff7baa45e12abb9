//! The HTTP server: the routes of the JSON API (docs/ui.md), the event stream, the embedded app,
//! behind the [`security::guard`](crate::security::guard).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use serde::Deserialize;
use serde_json::{Value, json};

use aptc_runtime::helm::Helm;

use crate::security::{Access, guard};
use crate::source::Source;
use crate::target::Deploys;
use crate::{UiError, api, assets, live, target};

/// What the handlers share.
#[derive(Clone)]
pub struct App {
    pub source: Arc<dyn Source>,
    /// Where deploys go (drift, rollback); `None` for a source without a target of its own.
    pub deploys: Option<Arc<Deploys>>,
    /// One rollback at a time.
    rolling_back: Arc<tokio::sync::Mutex<()>>,
}

impl App {
    /// The dashboard of `source`; drift and rollback only with `deploys`.
    pub fn new(source: Arc<dyn Source>, deploys: Option<Deploys>) -> App {
        App { source, deploys: deploys.map(Arc::new), rolling_back: Arc::default() }
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match &self {
            UiError::NotFound(_) => StatusCode::NOT_FOUND,
            UiError::Forbidden(_) => StatusCode::FORBIDDEN,
            UiError::Conflict(_) => StatusCode::CONFLICT,
            UiError::Policy(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Runs `f` (library calls that read files and may take a while) off the async threads.
async fn blocking<F>(f: F) -> Result<Json<Value>, UiError>
where
    F: FnOnce() -> Result<Value, UiError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result.map(Json),
        Err(error) => Err(UiError::Internal(format!("the request failed: {error}"))),
    }
}

fn deploys(app: &App) -> Result<Arc<Deploys>, UiError> {
    app.deploys.clone().ok_or_else(|| UiError::NotFound("this dashboard has no deploy target".to_string()))
}

#[derive(Deserialize)]
struct DiffQuery {
    from: u64,
    to: u64,
}

#[derive(Deserialize)]
struct SourceQuery {
    file: String,
}

#[derive(Deserialize, Default)]
struct Confirm {
    /// The digest of the plan the user saw; absent: only plan.
    digest: Option<String>,
}

/// The whole application: API, events and app, behind `access`.
pub fn router(app: App, access: Access) -> Router {
    let api = Router::new()
        .route("/api/v1/session", get(session))
        .route("/api/v1/policy", get(|State(a): State<App>| blocking(move || api::summary(&*a.source))))
        .route("/api/v1/graph", get(|State(a): State<App>| blocking(move || api::graph(&*a.source))))
        .route(
            "/api/v1/claims/{id}",
            get(|State(a): State<App>, Path(id): Path<String>| blocking(move || api::claim(&*a.source, &id))),
        )
        .route(
            "/api/v1/instances/{name}",
            get(|State(a): State<App>, Path(name): Path<String>| blocking(move || api::instance(&*a.source, &name))),
        )
        .route("/api/v1/instances/{name}/manifests", get(manifests))
        .route("/api/v1/revisions", get(|State(a): State<App>| blocking(move || api::revisions(&*a.source))))
        .route(
            "/api/v1/revisions/{n}",
            get(|State(a): State<App>, Path(n): Path<u64>| blocking(move || api::revision(&*a.source, n))),
        )
        .route(
            "/api/v1/diff",
            get(|State(a): State<App>, Query(q): Query<DiffQuery>| {
                blocking(move || api::diff(&*a.source, q.from, q.to))
            }),
        )
        .route(
            "/api/v1/source",
            get(|State(a): State<App>, Query(q): Query<SourceQuery>| {
                blocking(move || api::source_file(&*a.source, &q.file))
            }),
        )
        .route("/api/v1/drift", get(|State(a): State<App>| blocking(move || api::last_drift(&*a.source))))
        .route("/api/v1/drift/now", get(drift))
        .route("/api/v1/rollback/{n}", post(rollback))
        .route("/api/v1/events", get(|State(a): State<App>| async move { live::events(a.source.clone()) }))
        .fallback(assets::serve)
        .with_state(app);
    api.layer(middleware::from_fn_with_state(access, guard))
}

/// `GET /api/v1/session`: what this dashboard allows.
async fn session(State(app): State<App>) -> Json<Value> {
    let rollback_as = app.deploys.as_ref().and_then(|d| d.rollback_as.clone());
    Json(json!({ "read_only": rollback_as.is_none(), "rollback_as": rollback_as }))
}

/// `GET /api/v1/instances/{name}/manifests`, with the Helm `--helm` names (else the one found as
/// `aptc deploy` finds it), looked for only for a chart instance.
async fn manifests(State(app): State<App>, Path(name): Path<String>) -> Result<Json<Value>, UiError> {
    let explicit = app.deploys.as_ref().and_then(|d| d.targets.helm.clone());
    blocking(move || api::manifests(&*app.source, &name, || Helm::locate(explicit.as_deref()))).await
}

async fn drift(State(app): State<App>) -> Result<Json<Value>, UiError> {
    let deploys = deploys(&app)?;
    blocking(move || target::drift(app.source.state(), &deploys)).await
}

async fn rollback(
    State(app): State<App>,
    Path(to): Path<u64>,
    Json(confirm): Json<Confirm>,
) -> Result<Json<Value>, UiError> {
    let deploys = deploys(&app)?;
    let _one = app.rolling_back.clone().lock_owned().await;
    blocking(move || target::rollback(app.source.state(), &deploys, to, confirm.digest)).await
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).await
}
