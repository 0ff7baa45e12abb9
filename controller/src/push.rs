//! `aptc push`: a policy tree's bundles ([`crate::bundle::collect`]) applied to the control
//! cluster by server-side apply (field manager `aptc-push`), each only if its digest changed. The
//! cluster's admission webhook may refuse one (its message says which rule of the policy); the
//! others are pushed all the same. With a Git repository ([`GitPush`]), a bundle names a commit
//! the controller fetches instead of carrying its files; the push refuses when the checkout's
//! files differ from that commit's.

use std::path::PathBuf;
use std::time::Instant;

use aptc_compiler::workspace;

use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use thiserror::Error;

use crate::bundle::{self, Bundle, BundleError};
use crate::crd::{GitSource, PolicyBundle, PolicyBundleSpec, kube_name};
use crate::git::{self, GitError};

/// The field manager of `aptc push`'s applies.
pub const FIELD_MANAGER: &str = "aptc-push";

/// Why pushing could not start, or one bundle could not be pushed.
#[derive(Debug, Error)]
pub enum PushError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error(transparent)]
    Git(#[from] GitError),
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
    /// The commit it names, when its files are a Git commit's.
    pub revision: Option<String>,
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

/// Bundles that name a commit of a Git repository instead of carrying their files.
#[derive(Clone, Debug)]
pub struct GitPush {
    /// The repository as the controller reaches it.
    pub url: String,
    /// The commit (a full id); `None`: the checkout's `HEAD`.
    pub revision: Option<String>,
    /// The Secret of the controller's namespace with the repository's credentials
    /// (`spec.git.secretRef`); `None`: the repository needs none.
    pub secret: Option<String>,
}

/// Builds the bundles of the policy at `paths` and pushes each to `target` (as archives, or
/// naming a commit of `git`); the results in namespace order. An error before any push (the
/// policy, a bundle too large, files that differ from the commit, the kubeconfig) is the `Err`.
pub fn push_paths(paths: &[PathBuf], git: Option<&GitPush>, target: &Target) -> Result<Vec<Pushed>, PushError> {
    let bundles = bundle::collect(paths)?;
    let resources = match git {
        None => bundles.iter().map(|b| b.resource()).collect::<Result<Vec<_>, _>>()?,
        Some(source) => git_resources(&bundles, paths, source)?,
    };
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

/// The resources of `bundles` naming a commit of `source` (its checkout holds `paths`): each
/// bundle as the controller will make it from the commit ([`git::bundle_at`]) must be the one
/// collected here, so uncommitted or ignored changes are refused rather than silently left out.
fn git_resources(bundles: &[Bundle], paths: &[PathBuf], source: &GitPush) -> Result<Vec<PolicyBundle>, PushError> {
    git::check_url(&source.url)?;
    let root = workspace::policy_root(paths);
    let root = std::fs::canonicalize(&root).map_err(|e| BundleError::Io { path: root.clone(), source: e })?;
    let (git_dir, path) = git::locate(&root)?;
    let revision = match &source.revision {
        Some(revision) if git::is_commit(revision) => revision.to_ascii_lowercase(),
        Some(revision) => return Err(GitError::NotPinned(revision.clone()).into()),
        None => git::commit_of(&git_dir, "HEAD")?,
    };
    let scratch = tempfile::tempdir().map_err(|e| GitError::Work { path: std::env::temp_dir(), source: e })?;
    let mut out = Vec::new();
    for bundle in bundles {
        let deadline = Instant::now() + git::TIMEOUT;
        let at = git::bundle_at(&git_dir, &revision, &path, &bundle.namespace, scratch.path(), deadline)?;
        if let Some(paths) = git::differing(bundle, &at) {
            let (namespace, revision) = (bundle.namespace.clone(), revision.clone());
            return Err(GitError::Differs { namespace, revision, paths }.into());
        }
        let name =
            kube_name(&bundle.namespace).ok_or_else(|| BundleError::Unnamed { namespace: bundle.namespace.clone() })?;
        let archive = bundle.pack()?;
        let spec = PolicyBundleSpec {
            namespace: bundle.namespace.clone(),
            archive: String::new(),
            git: Some(GitSource {
                url: source.url.clone(),
                revision: revision.clone(),
                path: path.clone(),
                secret_ref: source.secret.clone().map(|name| crate::crd::SecretRef { name }),
            }),
            digest: bundle::digest(&archive),
            files: u32::try_from(bundle.files.len()).unwrap_or(u32::MAX),
        };
        out.push(PolicyBundle::new(&name, spec));
    }
    Ok(out)
}

/// Pushes each bundle (server-side apply, forced: the pusher owns its bundle's spec), skipping
/// those whose spec the cluster has already (the same files, from the same source).
pub async fn push(client: &Client, bundles: &[PolicyBundle]) -> Vec<Pushed> {
    let api: Api<PolicyBundle> = Api::all(client.clone());
    let mut out = Vec::new();
    for bundle in bundles {
        let name = bundle.metadata.name.clone().unwrap_or_default();
        let outcome = push_one(&api, &name, bundle).await;
        let revision = bundle.spec.git.as_ref().map(|git| git.revision.clone());
        out.push(Pushed { namespace: bundle.spec.namespace.clone(), name, revision, outcome });
    }
    out
}

async fn push_one(api: &Api<PolicyBundle>, name: &str, bundle: &PolicyBundle) -> Result<Change, PushError> {
    let existing = api.get_opt(name).await.map_err(api_error)?;
    if existing.as_ref().is_some_and(|e| e.spec == bundle.spec) {
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
