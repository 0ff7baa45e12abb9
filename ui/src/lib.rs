//! `aptc ui`: a local web server and the single-page dashboard it serves: the policy's graph
//! (claims → contracts → service instances → component instances, by cluster and namespace), a
//! claim's decision chain with its source, an instance, the revisions with their plans and diffs,
//! drift, and (when allowed) a rollback. The data comes from a [`source::Source`] (the local
//! policy and store now, the controller's state later); the pages read it through the JSON API
//! of [`api`] (docs/ui.md). It sits above the compiler and the runtime, like the CLI, and holds
//! no policy logic: every answer is a library call.

pub mod api;
pub mod assets;
pub mod live;
pub mod security;
pub mod server;
pub mod source;
pub mod target;

use aptc_runtime::deploy::DeployError;
use aptc_runtime::store::StoreError;
use thiserror::Error;

/// Why a request could not be answered; the HTTP status comes from the variant.
#[derive(Debug, Error)]
pub enum UiError {
    /// The policy does not load (its rendered diagnostics).
    #[error("the policy does not load:\n{0}")]
    Policy(String),
    /// No such claim, instance, revision or policy file (what to write instead).
    #[error("{0}")]
    NotFound(String),
    /// The dashboard was started read-only, or the user may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The plan changed between showing it and confirming it.
    #[error("{0}")]
    Conflict(String),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Drift or a rollback failed in the runtime (its message is the CLI's).
    #[error(transparent)]
    Deploy(#[from] DeployError),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The server itself failed (binding, its runtime, a task).
    #[error("{0}")]
    Internal(String),
}

/// Where a started dashboard is, for the person who started it.
#[derive(Debug)]
pub struct Started {
    /// The address to open (with the token, when one is needed).
    pub url: String,
    /// The token every request must carry (a non-loopback address), else `None`.
    pub token: Option<String>,
}

/// Binds `listen`, tells `started` where the dashboard is, and serves `app` until the process
/// ends (on its own tokio runtime: callers are synchronous, like the CLI).
pub fn run(listen: std::net::SocketAddr, app: server::App, started: impl FnOnce(&Started)) -> Result<(), UiError> {
    let io = |what: &str, error: std::io::Error| UiError::Internal(format!("{what}: {error}"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| io("starting the server's runtime", e))?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(listen).await.map_err(|e| io(&format!("listening on {listen}"), e))?;
        let bound = listener.local_addr().map_err(|e| io("reading the bound address", e))?;
        let access = security::Access::for_address(&bound)
            .map_err(|e| UiError::Internal(format!("generating the access token: {e}")))?;
        let url = match &access.token {
            Some(token) => format!("http://{bound}/?token={token}"),
            None => format!("http://{bound}/"),
        };
        started(&Started { url, token: access.token.clone() });
        server::serve(listener, server::router(app, access)).await.map_err(|e| io("serving", e))
    })
}

/// Opens `url` in the desktop's browser (`--open`), without waiting for it.
pub fn open_browser(url: &str) -> std::io::Result<()> {
    let opener = if cfg!(target_os = "macos") { "open" } else { "xdg-open" };
    std::process::Command::new(opener)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(drop)
}
