//! `aptc push`: a policy tree's bundles ([`crate::bundle::collect`]) applied to the control
//! cluster by server-side apply (field manager `aptc-push`), each only if its digest changed. The
//! cluster's admission webhook may refuse one (its message says which rule of the policy); the
//! others are pushed all the same.

use std::path::PathBuf;

use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use thiserror::Error;

use crate::bundle::{self, BundleError};
use crate::crd::PolicyBundle;

/// The field manager of `aptc push`'s applies.
pub const FIELD_MANAGER: &str = "aptc-push";

/// Why pushing could not start, or one bundle could not be pushed.
#[derive(Debug, Error)]
pub enum PushError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("kubeconfig {path}: {reason}")]
    Kubeconfig { path: PathBuf, reason: String },
    #[error(
        "the cluster has no PolicyBundle resource: install the controller first (`aptc controller manifests | kubectl apply -f -`)"
    )]
    NotInstalled,
    #[error("the cluster does not answer: {0}")]
    Unreachable(String),
    #[error("refused: {0}")]
    Refused(String),
    #[error("the API server: {0}")]
    Api(String),
    #[error("starting the Kubernetes client: {0}")]
    Runtime(#[source] std::io::Error),
}

/// What happened to one bundle.
#[derive(Debug)]
pub struct Pushed {
    /// The `.apt` namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    pub outcome: Result<Change, PushError>,
}

/// What a push changed in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    /// The cluster has this version already.
    Unchanged,
}

/// Which cluster: a kubeconfig (`None`: `$KUBECONFIG`, else `~/.kube/config`) and a context in it
/// (`None`: its current context).
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

impl Target {
    /// A client for the cluster.
    pub async fn client(&self) -> Result<Client, PushError> {
        let connection = aptc_runtime::connection::Connection {
            cluster: "control".into(),
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            origin: None,
        };
        let path = connection.kubeconfig_path();
        let error = |reason: String| PushError::Kubeconfig { path: path.clone(), reason };
        let kubeconfig = Kubeconfig::read_from(&path).map_err(|e| error(e.to_string()))?;
        let options = KubeConfigOptions { context: self.context.clone(), ..KubeConfigOptions::default() };
        let config = Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| error(e.to_string()))?;
        Client::try_from(config).map_err(|e| error(e.to_string()))
    }
}

/// Builds the bundles of the policy at `paths` and pushes each to `target`; the results in
/// namespace order. An error before any push (the policy, a bundle too large, the kubeconfig) is
/// the `Err`.
pub fn push_paths(paths: &[PathBuf], target: &Target) -> Result<Vec<Pushed>, PushError> {
    let bundles = bundle::collect(paths)?;
    let resources = bundles.iter().map(|b| b.resource()).collect::<Result<Vec<_>, _>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(PushError::Runtime)?;
    runtime.block_on(async {
        let client = target.client().await?;
        // An unreachable cluster is one error, not one per bundle.
        match tokio::time::timeout(std::time::Duration::from_secs(10), client.apiserver_version()).await {
            Err(_) => return Err(PushError::Unreachable("no answer within 10 s".into())),
            Ok(Err(error)) => return Err(PushError::Unreachable(error.to_string())),
            Ok(Ok(_)) => {}
        }
        Ok(push(&client, &resources).await)
    })
}

/// Pushes each bundle (server-side apply, forced: the pusher owns its bundle's spec), skipping
/// those whose digest the cluster has already.
pub async fn push(client: &Client, bundles: &[PolicyBundle]) -> Vec<Pushed> {
    let api: Api<PolicyBundle> = Api::all(client.clone());
    let mut out = Vec::new();
    for bundle in bundles {
        let name = bundle.metadata.name.clone().unwrap_or_default();
        let outcome = push_one(&api, &name, bundle).await;
        out.push(Pushed { namespace: bundle.spec.namespace.clone(), name, outcome });
    }
    out
}

async fn push_one(api: &Api<PolicyBundle>, name: &str, bundle: &PolicyBundle) -> Result<Change, PushError> {
    let existing = api.get_opt(name).await.map_err(api_error)?;
    if existing.as_ref().is_some_and(|e| e.spec.digest == bundle.spec.digest) {
        return Ok(Change::Unchanged);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(bundle)).await.map_err(api_error)?;
    Ok(if existing.is_some() { Change::Updated } else { Change::Created })
}

/// The API server's answer as a push error: the resource missing (the CRDs are not installed), a
/// refusal (RBAC, the admission webhook: its message says why), or anything else.
fn api_error(error: kube::Error) -> PushError {
    match error {
        kube::Error::Api(status) if status.code == 404 => PushError::NotInstalled,
        kube::Error::Api(status) if matches!(status.code, 400 | 403 | 422) => PushError::Refused(status.message),
        kube::Error::Api(status) => PushError::Api(format!("{} ({})", status.message, status.code)),
        other => PushError::Api(other.to_string()),
    }
}
