//! Helm releases on a cluster: `helm upgrade --install`, `uninstall`, `status` and `get manifest`,
//! run with the real Helm binary ([`crate::helm`]) for the cluster driver.
//!
//! Every object of a release carries aptc's labels and annotation ([`crate::manifest`]), stamped
//! by Helm's post-renderer so that Helm itself stores and applies the stamped objects (and hooks).
//! The post-renderer is aptc itself (`aptc __post-render`, [`post_render`]):
//!
//! - Helm 4 takes `--post-renderer NAME` as the name of a plugin of type `postrenderer/v1`, not a
//!   path. Each call writes such a plugin into its private temporary directory (beside the values
//!   file) and puts that directory *first* in `HELM_PLUGINS`, followed by the user's own plugin
//!   directories (as `helm env HELM_PLUGINS` reports them), which Helm reads as a path list: so
//!   the user's getter plugins (`s3://` chart repositories and the like) keep working, and a user
//!   plugin that happens to share the name loses to ours (Helm takes the first directory's).
//!   Nothing is installed into the user's Helm. The plugin's command is `${HELM_PLUGIN_DIR}/aptc`,
//!   a symbolic link to the aptc executable, because Helm splits a plugin command at spaces and
//!   expands `$` in it; the stamp goes in `--post-renderer-args`, which Helm passes unchanged.
//!   Helm 4 drops a plugin's standard error, so the post-renderer also writes why it failed into a
//!   file of that directory, and the error names it.
//! - Helm 3 takes the executable's path, with the same arguments.
//!
//! Failures that may pass (the API server unreachable for a moment, throttling) are retried with
//! [`Backoff`]; anything else fails at once with Helm's message, naming the release and the
//! cluster. A release left pending by another (or an interrupted) operation is not retried: the
//! error says which Helm command clears it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::Deserialize;

use crate::connection::Connection;
use crate::helm::{
    Failure, Helm, HelmError, TEMPLATE_TIMEOUT, TemplateRequest, chart_args, command, run, run_with, values_input,
};
use crate::manifest::{
    LABEL_INSTANCE, LABEL_NAMESPACE, LABEL_REVISION, ManifestError, Stamp, parse_stream, stamp_all, write_stream,
};
use crate::plan::Unit;
use crate::private_dir::{self, PrivateDir};
use crate::retry::Backoff;
use crate::source::{ChartRef, Source};

/// The hidden aptc subcommand Helm runs as the post-renderer.
pub const POST_RENDER_COMMAND: &str = "__post-render";

/// The name of the per-call Helm 4 post-renderer plugin.
pub const PLUGIN_NAME: &str = "aptc-stamp";

/// Helm's `--timeout` by default (Helm's own default): how long each Kubernetes operation of an
/// upgrade or uninstall may wait.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// How long a read (`status`, `get manifest`) may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Helm's message for a release locked by another operation (or one that was interrupted).
const PENDING: &str = "another operation (install/upgrade/rollback) is in progress";

/// Helm's message for a release that does not exist.
const NOT_FOUND: &str = "release: not found";

/// Helm release operations against clusters, with aptc's post-renderer.
#[derive(Clone, Debug)]
pub struct Releases {
    helm: Helm,
    /// The aptc executable, run by Helm as `aptc __post-render` (the CLI passes its own path).
    post_renderer: PathBuf,
    backoff: Backoff,
    timeout: Duration,
    /// The user's Helm plugin directories (`helm env HELM_PLUGINS`), kept after ours; `None` for
    /// Helm 3, which needs no plugin.
    user_plugins: Option<OsString>,
}

/// A release as Helm reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseStatus {
    /// Helm's state: `deployed`, `failed`, `pending-install`, `pending-upgrade`,
    /// `pending-rollback`, `uninstalling`, `superseded`, …
    pub status: String,
    /// Helm's revision of the release (not aptc's revision).
    pub revision: u64,
}

impl ReleaseStatus {
    /// Whether an operation holds the release (or was interrupted and left it locked).
    pub fn is_pending(&self) -> bool {
        self.status.starts_with("pending-")
    }

    /// Whether the last operation succeeded, so the release runs what it was given.
    pub fn is_deployed(&self) -> bool {
        self.status == "deployed"
    }
}

/// What an upgrade or uninstall did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReleaseOutcome {
    /// Installed or upgraded, and ready (Helm waited).
    Deployed(ReleaseStatus),
    Uninstalled,
    /// There was no such release.
    AlreadyGone,
}

impl std::fmt::Display for ReleaseOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReleaseOutcome::Deployed(status) => write!(f, "{} (helm revision {})", status.status, status.revision),
            ReleaseOutcome::Uninstalled => write!(f, "uninstalled"),
            ReleaseOutcome::AlreadyGone => write!(f, "was already gone"),
        }
    }
}

/// The part of Helm's release JSON (`status -o json`, `upgrade -o json`) aptc reads.
#[derive(Deserialize)]
struct ReleaseJson {
    version: u64,
    info: InfoJson,
}

#[derive(Deserialize)]
struct InfoJson {
    status: String,
}

/// The part of `helm get metadata -o json` aptc reads: the release's labels.
#[derive(Deserialize)]
struct MetadataJson {
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

/// One revision of `helm history -o json`.
#[derive(Deserialize)]
struct HistoryJson {
    revision: u64,
    status: String,
}

impl Releases {
    /// Releases with `helm`, stamping objects with the aptc executable `post_renderer`; Helm's
    /// default timeout and [`Backoff::default`]. With Helm 4 this asks Helm for the user's plugin
    /// directories (kept usable beside aptc's plugin).
    pub fn new(helm: Helm, post_renderer: PathBuf) -> Result<Releases, HelmError> {
        // What a killed run left (its private directories) goes before anything else is done.
        private_dir::sweep(&std::env::temp_dir());
        let user_plugins = if helm.is_v3() {
            None
        } else {
            let output = run(command(&helm.path).args(["env", "HELM_PLUGINS"]), QUERY_TIMEOUT)?;
            if !output.success {
                return Err(HelmError::Failed {
                    command: "`helm env HELM_PLUGINS`".into(),
                    reason: Failure::helm(output.message()),
                });
            }
            Some(OsString::from(output.stdout.trim()))
        };
        Ok(Releases { helm, post_renderer, backoff: Backoff::default(), timeout: DEFAULT_TIMEOUT, user_plugins })
    }

    /// How transient failures are retried.
    pub fn with_backoff(self, backoff: Backoff) -> Releases {
        Releases { backoff, ..self }
    }

    /// Helm's `--timeout`: how long each Kubernetes operation may wait for readiness.
    pub fn with_timeout(self, timeout: Duration) -> Releases {
        Releases { timeout, ..self }
    }

    /// `helm upgrade --install RELEASE CHART --namespace NS --create-namespace --values -
    /// --reset-values [--kubeconfig PATH] [--kube-context CTX] --wait --timeout T
    /// --rollback-on-failure (Helm 3: --atomic) --server-side true --force-conflicts (Helm 4)
    /// --labels aptc.dev/…=… --output json` with the
    /// post-renderer, the values on Helm's standard input (no file holds them). `--reset-values`
    /// makes `values` the whole truth: without it Helm reuses the last release's values when the
    /// file is empty. A failed upgrade is rolled back (a failed first install removed) by Helm.
    pub fn upgrade(
        &self,
        connection: &Connection,
        unit: &Unit,
        revision: u64,
        values: &serde_json::Value,
    ) -> Result<ReleaseOutcome, HelmError> {
        self.upgrade_guarded(connection, unit, revision, values, &Guard::NONE)
    }

    /// [`Releases::upgrade`] under `guard`: Helm's messages scrubbed, Helm stopped when the
    /// guard says so.
    pub fn upgrade_guarded(
        &self,
        connection: &Connection,
        unit: &Unit,
        revision: u64,
        values: &serde_json::Value,
        guard: &Guard,
    ) -> Result<ReleaseOutcome, HelmError> {
        let chart = chart_of(unit)?;
        let private =
            PrivateDir::create("helm").map_err(|e| HelmError::io("creating a private temporary directory", e))?;
        let mut command = command(&self.helm.path);
        command.arg("upgrade").arg("--install").arg(&unit.name);
        chart_args(&mut command, &chart, version_of(unit))?;
        command
            .arg("--namespace")
            .arg(&unit.k8s_namespace)
            .arg("--create-namespace")
            .arg("--values")
            .arg("-")
            .arg("--reset-values");
        connection_args(&mut command, connection);
        command
            .arg("--wait")
            .arg("--timeout")
            .arg(format!("{}s", self.timeout.as_secs().max(1)))
            .arg(if self.helm.is_v3() { "--atomic" } else { "--rollback-on-failure" });
        // What people changed by hand is taken back, as aptc's own applies do.
        self.server_side_args(&mut command);
        command
            .arg("--labels")
            .arg(format!(
                "{LABEL_INSTANCE}={},{LABEL_REVISION}={revision},{LABEL_NAMESPACE}={}",
                unit.id, unit.namespace
            ))
            .arg("--output")
            .arg("json");
        self.post_renderer_args(&mut command, private.path(), &Stamp::of(unit, revision))?;
        // Waiting, then perhaps rolling back (each up to the timeout), after downloading the chart.
        let deadline = self.timeout * 2 + TEMPLATE_TIMEOUT;
        tracing::info!(release = %unit.name, cluster = %connection.cluster, revision, "helm upgrade --install");
        let input = values_input(values);
        let result = self.execute("helm upgrade", &mut command, deadline, Some(&input), guard);
        let stamping = read_post_render_error(private.path()).map(|why| (guard.scrub)(&why));
        private.remove().map_err(|e| HelmError::io("removing a private temporary directory", e))?;
        match result.and_then(|stdout| parse_release(&stdout)) {
            Ok(status) => {
                tracing::info!(release = %unit.name, status = %status.status, helm_revision = status.revision, "upgraded");
                Ok(ReleaseOutcome::Deployed(status))
            }
            Err(failure) if failure.says(PENDING) => Err(self.pending(connection, unit)),
            Err(failure) => Err(self.failed("helm upgrade", connection, unit, with_stamping(failure, stamping))),
        }
    }

    /// `helm uninstall RELEASE --namespace NS [--kubeconfig PATH] [--kube-context CTX] --wait
    /// --timeout T`; a release that does not exist is already gone (not an error).
    pub fn uninstall(&self, connection: &Connection, unit: &Unit) -> Result<ReleaseOutcome, HelmError> {
        self.uninstall_guarded(connection, unit, &Guard::NONE)
    }

    /// [`Releases::uninstall`] under `guard`.
    pub fn uninstall_guarded(
        &self,
        connection: &Connection,
        unit: &Unit,
        guard: &Guard,
    ) -> Result<ReleaseOutcome, HelmError> {
        let mut command = self.release_command(&["uninstall"], connection, unit);
        command.arg("--wait").arg("--timeout").arg(format!("{}s", self.timeout.as_secs().max(1)));
        tracing::info!(release = %unit.name, cluster = %connection.cluster, "helm uninstall");
        match self.execute("helm uninstall", &mut command, self.timeout + QUERY_TIMEOUT, None, guard) {
            Ok(_) => Ok(ReleaseOutcome::Uninstalled),
            Err(failure) if failure.says(NOT_FOUND) => Ok(ReleaseOutcome::AlreadyGone),
            Err(failure) => Err(self.failed("helm uninstall", connection, unit, failure)),
        }
    }

    /// `helm status RELEASE --namespace NS --output json`: Helm's state and revision of the
    /// release, `None` when there is none.
    pub fn status(&self, connection: &Connection, unit: &Unit) -> Result<Option<ReleaseStatus>, HelmError> {
        let mut command = self.release_command(&["status"], connection, unit);
        command.arg("--output").arg("json");
        let answer = self.execute("helm status", &mut command, QUERY_TIMEOUT, None, &Guard::NONE);
        match answer.and_then(|stdout| parse_release(&stdout)) {
            Ok(status) => Ok(Some(status)),
            Err(failure) if failure.says(NOT_FOUND) => Ok(None),
            Err(failure) => Err(self.failed("helm status", connection, unit, failure)),
        }
    }

    /// Brings back a release that an interrupted operation left locked (`pending-install`,
    /// `pending-upgrade`, `pending-rollback`) when it is aptc's own: its release label
    /// `aptc.dev/instance` is the unit's id (`helm get metadata`). It is rolled back to its last
    /// revision that was deployed (`helm history`), or uninstalled when it never was. What was
    /// done, for the action's result (`None`: nothing to recover, or not aptc's release: then
    /// the upgrade fails saying how to unlock it).
    pub fn recover(&self, connection: &Connection, unit: &Unit, guard: &Guard) -> Result<Option<String>, HelmError> {
        let Some(status) = self.status(connection, unit)? else { return Ok(None) };
        if !status.is_pending() {
            return Ok(None);
        }
        let mut command = self.release_command(&["get", "metadata"], connection, unit);
        command.arg("--output").arg("json");
        let metadata = self
            .execute("helm get metadata", &mut command, QUERY_TIMEOUT, None, guard)
            .and_then(|stdout| serde_json::from_str::<MetadataJson>(&stdout).map_err(|e| Failure::Answer(e.into())))
            .map_err(|failure| self.failed("helm get metadata", connection, unit, failure))?;
        if metadata.labels.get(LABEL_INSTANCE) != Some(&unit.id) {
            tracing::warn!(release = %unit.name, status = %status.status, "a locked release that is not aptc's is left alone");
            return Ok(None);
        }
        let mut command = self.release_command(&["history"], connection, unit);
        command.arg("--output").arg("json");
        let history = self
            .execute("helm history", &mut command, QUERY_TIMEOUT, None, guard)
            .and_then(|stdout| serde_json::from_str::<Vec<HistoryJson>>(&stdout).map_err(|e| Failure::Answer(e.into())))
            .map_err(|failure| self.failed("helm history", connection, unit, failure))?;
        let deployed = history
            .iter()
            .filter(|r| r.revision < status.revision && matches!(r.status.as_str(), "deployed" | "superseded"))
            .map(|r| r.revision)
            .max();
        let state = &status.status;
        tracing::warn!(release = %unit.name, %state, ?deployed, "recovering a release an interrupted operation left locked");
        let done = match deployed {
            Some(revision) => {
                self.rollback(connection, unit, revision, guard)?;
                format!("rolled back to helm revision {revision}")
            }
            None => {
                self.uninstall_guarded(connection, unit, guard)?;
                "uninstalled (it was never deployed)".to_string()
            }
        };
        Ok(Some(format!("recovered release {}: an interrupted operation left it {state}; {done}", unit.name)))
    }

    /// `helm rollback RELEASE REVISION --namespace NS [--kubeconfig PATH] [--kube-context CTX]
    /// --wait --timeout T` (Helm 4: `--server-side true --force-conflicts`, as upgrades).
    pub fn rollback(
        &self,
        connection: &Connection,
        unit: &Unit,
        revision: u64,
        guard: &Guard,
    ) -> Result<(), HelmError> {
        let mut command = command(&self.helm.path);
        command.arg("rollback").arg(&unit.name).arg(revision.to_string()).arg("--namespace").arg(&unit.k8s_namespace);
        connection_args(&mut command, connection);
        command.arg("--wait").arg("--timeout").arg(format!("{}s", self.timeout.as_secs().max(1)));
        self.server_side_args(&mut command);
        tracing::info!(release = %unit.name, cluster = %connection.cluster, revision, "helm rollback");
        self.execute("helm rollback", &mut command, self.timeout * 2 + QUERY_TIMEOUT, None, guard)
            .map(|_| ())
            .map_err(|failure| self.failed("helm rollback", connection, unit, failure))
    }

    /// Helm 4 applies server-side and takes over fields a person changed by hand
    /// (`--server-side true --force-conflicts`), as aptc's own manifests apply does. Helm 3 has
    /// no such flags and needs none: its upgrades are three-way merge patches against the live
    /// object, which take back the chart's fields a person changed, with no field-manager
    /// conflicts to fail on.
    fn server_side_args(&self, command: &mut Command) {
        if !self.helm.is_v3() {
            command.arg("--server-side").arg("true").arg("--force-conflicts");
        }
    }

    /// `helm get manifest RELEASE --namespace NS`: the objects Helm applied (stamped), to compare
    /// with the live ones for drift.
    pub fn manifest(&self, connection: &Connection, unit: &Unit) -> Result<String, HelmError> {
        let mut command = self.release_command(&["get", "manifest"], connection, unit);
        self.execute("helm get manifest", &mut command, QUERY_TIMEOUT, None, &Guard::NONE)
            .map_err(|failure| self.failed("helm get manifest", connection, unit, failure))
    }

    /// `helm template` with the same chart, values and post-renderer as [`Releases::upgrade`],
    /// without a cluster: the stamped objects an upgrade would apply (what `manifest` returns
    /// afterwards), for a diff before deploying.
    pub fn template(&self, unit: &Unit, revision: u64, values: &serde_json::Value) -> Result<String, HelmError> {
        let chart = chart_of(unit)?;
        let private =
            PrivateDir::create("helm").map_err(|e| HelmError::io("creating a private temporary directory", e))?;
        let mut command = self.helm.template_command(&TemplateRequest {
            release: &unit.name,
            chart: &chart,
            version: version_of(unit),
            namespace: &unit.k8s_namespace,
            values,
        })?;
        self.post_renderer_args(&mut command, private.path(), &Stamp::of(unit, revision))?;
        let input = values_input(values);
        let result = self.execute("helm template", &mut command, TEMPLATE_TIMEOUT, Some(&input), &Guard::NONE);
        let stamping = read_post_render_error(private.path());
        private.remove().map_err(|e| HelmError::io("removing a private temporary directory", e))?;
        result.map_err(|failure| HelmError::Failed {
            command: format!("helm template of release {}", unit.name),
            reason: with_stamping(failure, stamping),
        })
    }

    /// `helm VERB… RELEASE --namespace NS` and the connection's flags.
    fn release_command(&self, verb: &[&str], connection: &Connection, unit: &Unit) -> Command {
        let mut command = command(&self.helm.path);
        command.args(verb).arg(&unit.name).arg("--namespace").arg(&unit.k8s_namespace);
        connection_args(&mut command, connection);
        command
    }

    /// The post-renderer's flags (and, for Helm 4, its plugin in `private` and `HELM_PLUGINS`).
    fn post_renderer_args(&self, command: &mut Command, private: &Path, stamp: &Stamp) -> Result<(), HelmError> {
        let mut args = Vec::new();
        match &self.user_plugins {
            None => {
                command.arg("--post-renderer").arg(&self.post_renderer);
                args.push(POST_RENDER_COMMAND.to_string());
            }
            Some(user_plugins) => {
                let plugins = private.join("plugins");
                write_plugin(&plugins.join(PLUGIN_NAME), &self.post_renderer)
                    .map_err(|e| HelmError::io("writing aptc's post-renderer plugin", e))?;
                let mut dirs = vec![plugins];
                dirs.extend(std::env::split_paths(user_plugins));
                let joined = std::env::join_paths(dirs).map_err(|e| HelmError::Plugins(std::sync::Arc::new(e)))?;
                command.env("HELM_PLUGINS", joined).arg("--post-renderer").arg(PLUGIN_NAME);
            }
        }
        args.extend([
            format!("--instance={}", stamp.instance_id),
            format!("--key={}", stamp.instance_key),
            format!("--revision={}", stamp.revision),
            format!("--namespace={}", stamp.namespace),
            format!("--error-file={}", private.join(POST_RENDER_ERROR).display()),
        ]);
        for arg in args {
            command.arg(format!("--post-renderer-args={arg}"));
        }
        Ok(())
    }

    /// Runs Helm, retrying transient failures; its output, or how it failed (Helm's message
    /// trimmed, without `Error: `, scrubbed by the guard before anything, a log line included,
    /// sees it).
    fn execute(
        &self,
        what: &str,
        command: &mut Command,
        deadline: Duration,
        input: Option<&[u8]>,
        guard: &Guard,
    ) -> Result<String, Failure> {
        tracing::debug!(?command, "running helm");
        self.backoff.retry(what, || {
            let output = run_with(command, deadline, input, guard.stop)?;
            if output.success {
                Ok(output.stdout)
            } else {
                Err(Failure::helm((guard.scrub)(output.message().trim_start_matches("Error: "))))
            }
        })
    }

    /// `what` (`helm upgrade`) of `unit`'s release failed as `reason` says.
    fn failed(&self, what: &str, connection: &Connection, unit: &Unit, reason: Failure) -> HelmError {
        HelmError::Failed {
            command: format!(
                "{what} of release {} (namespace {}) on {}",
                unit.name,
                unit.k8s_namespace,
                connection.describe()
            ),
            reason,
        }
    }

    /// The error for a release locked by another operation, saying how to unlock it: a pending
    /// first install is removed, a pending upgrade or rollback is rolled back.
    fn pending(&self, connection: &Connection, unit: &Unit) -> HelmError {
        let state = self.status(connection, unit).ok().flatten().map(|s| s.status);
        let mut flags = format!("-n {}", unit.k8s_namespace);
        if let Some(kubeconfig) = &connection.kubeconfig {
            flags.push_str(&format!(" --kubeconfig {}", kubeconfig.display()));
        }
        if let Some(context) = &connection.context {
            flags.push_str(&format!(" --kube-context {context}"));
        }
        let rollback = format!("`helm rollback {} {flags}` (back to its last deployed revision)", unit.name);
        let uninstall = format!("`helm uninstall {} {flags}`", unit.name);
        let fix = match state.as_deref() {
            Some("pending-install") => format!("remove the unfinished install with {uninstall}"),
            Some("pending-upgrade" | "pending-rollback") => format!("roll it back with {rollback}"),
            _ => format!("roll it back with {rollback}, or if it was never deployed remove it with {uninstall}"),
        };
        HelmError::Pending {
            release: unit.name.clone(),
            namespace: unit.k8s_namespace.clone(),
            on: connection.describe(),
            state: state.unwrap_or_else(|| "pending".into()),
            fix,
        }
    }
}

/// What a Helm call needs besides its command line: how to cut secrets out of what Helm says
/// (before it is logged, stored or shown), and when to stop waiting for it (a reason, e.g. the
/// cluster stopped answering).
pub struct Guard<'a> {
    pub scrub: &'a dyn Fn(&str) -> String,
    pub stop: &'a dyn Fn() -> Option<String>,
}

impl Guard<'static> {
    /// Nothing to scrub (no secret was given), never stopped early.
    pub const NONE: Guard<'static> = Guard { scrub: &|text| text.to_string(), stop: &|| None };
}

/// The post-renderer: `manifests` (a YAML stream from Helm) with every object stamped, as a YAML
/// stream. `aptc __post-render` is this on standard input and output.
pub fn post_render(manifests: &str, with: &Stamp) -> Result<String, ManifestError> {
    let mut documents = parse_stream(manifests).map_err(|e| e.in_output("Helm's manifests"))?;
    stamp_all(&mut documents, with)?;
    write_stream(&documents)
}

/// The file in a call's private directory where the post-renderer says why it failed.
const POST_RENDER_ERROR: &str = "post-render.error";

/// A `postrenderer/v1` plugin in `dir` running `aptc __post-render` through a link to `aptc`.
fn write_plugin(dir: &Path, aptc: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let link = dir.join(format!("aptc{}", std::env::consts::EXE_SUFFIX));
    #[cfg(unix)]
    std::os::unix::fs::symlink(aptc, &link)?;
    #[cfg(not(unix))]
    std::fs::copy(aptc, &link)?;
    // JSON is YAML: no quoting to get wrong.
    let plugin = serde_json::json!({
        "apiVersion": "v1",
        "type": "postrenderer/v1",
        "name": PLUGIN_NAME,
        "version": env!("CARGO_PKG_VERSION"),
        "runtime": "subprocess",
        "runtimeConfig": {
            "platformCommand": [{
                "command": format!("${{HELM_PLUGIN_DIR}}/aptc{}", std::env::consts::EXE_SUFFIX),
                "args": [POST_RENDER_COMMAND],
            }],
        },
    });
    std::fs::write(dir.join("plugin.yaml"), plugin.to_string())
}

/// Why the post-renderer failed, if it did (Helm 4 only says that it did).
fn read_post_render_error(private: &Path) -> Option<String> {
    std::fs::read_to_string(private.join(POST_RENDER_ERROR))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// `failure`, with why the post-renderer failed when Helm failed because of it.
fn with_stamping(failure: Failure, stamping: Option<String>) -> Failure {
    match failure {
        Failure::Helm { stderr, stamping: None } => Failure::Helm { stderr, stamping },
        other => other,
    }
}

fn chart_of(unit: &Unit) -> Result<ChartRef, HelmError> {
    unit.source
        .chart_ref()
        .ok_or_else(|| HelmError::NotAChart { key: unit.key.clone(), source_text: unit.source.describe() })
}

fn version_of(unit: &Unit) -> Option<&str> {
    match &unit.source {
        Source::Chart { version, .. } => version.as_deref(),
        Source::Manifests { .. } => None,
    }
}

fn connection_args(command: &mut Command, connection: &Connection) {
    if let Some(kubeconfig) = &connection.kubeconfig {
        command.arg("--kubeconfig").arg(kubeconfig);
    }
    if let Some(context) = &connection.context {
        command.arg("--kube-context").arg(context);
    }
}

fn parse_release(json: &str) -> Result<ReleaseStatus, Failure> {
    let release: ReleaseJson = serde_json::from_str(json).map_err(|e| Failure::Answer(std::sync::Arc::new(e)))?;
    Ok(ReleaseStatus { status: release.info.status, revision: release.version })
}

#[cfg(all(test, unix))]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;
    use crate::plan::tests::unit;

    /// A fake `helm` in a temporary directory: answers `version --short` and `env HELM_PLUGINS`,
    /// logs every other call's arguments (one per line, then `<end>`) to `calls`, and what it saw
    /// (the values on its standard input, `HELM_PLUGINS`, aptc's plugin) to `observed`. For a subcommand
    /// `VERB` it prints `VERB.stdout`, or, while it has been called at most `VERB.fail-times`
    /// times (default: always), fails with `VERB.stderr` (`get-WHAT` for `get WHAT`).
    struct FakeHelm {
        dir: tempfile::TempDir,
        helm: Helm,
    }

    const SCRIPT: &str = r#"#!/bin/sh
dir='DIR'
case "$1" in
  version) echo 'VERSION'; exit 0 ;;
  env) echo '/home/u/.local/share/helm/plugins'; exit 0 ;;
esac
printf '%s\n' "$@" '<end>' >> "$dir/calls"
prev=''
for a in "$@"; do
  if [ "$prev" = --values ]; then echo "values $a $(cat)" >> "$dir/observed"; fi
  prev="$a"
done
if [ -n "$HELM_PLUGINS" ]; then
  echo "plugins $HELM_PLUGINS" >> "$dir/observed"
  first="${HELM_PLUGINS%%:*}"
  echo "link $(readlink "$first/aptc-stamp/aptc")" >> "$dir/observed"
  echo "plugin $(cat "$first/aptc-stamp/plugin.yaml")" >> "$dir/observed"
fi
verb="$1"
if [ "$1" = get ]; then verb="get-$2"; fi
n=$(( $(cat "$dir/$verb.count" 2>/dev/null || echo 0) + 1 ))
echo "$n" > "$dir/$verb.count"
if [ -f "$dir/$verb.stderr" ] && [ "$n" -le "$(cat "$dir/$verb.fail-times" 2>/dev/null || echo 1000)" ]; then
  cat "$dir/$verb.stderr" >&2
  exit 1
fi
cat "$dir/$verb.stdout" 2>/dev/null
exit 0
"#;

    impl FakeHelm {
        fn new(version: &str) -> FakeHelm {
            use std::os::unix::fs::PermissionsExt;
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("helm");
            let script = SCRIPT.replace("DIR", &dir.path().display().to_string()).replace("VERSION", version);
            std::fs::write(&path, script).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            // Another test's thread may be forking while the script was open for writing
            // ("Text file busy"); that passes.
            let helm = (0..50)
                .find_map(|_| match Helm::at(&path) {
                    Ok(helm) => Some(helm),
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(20));
                        None
                    }
                })
                .expect("the fake helm runs");
            FakeHelm { dir, helm }
        }

        fn releases(&self) -> Releases {
            Releases::new(self.helm.clone(), PathBuf::from("/opt/aptc/bin/aptc"))
                .unwrap()
                .with_backoff(Backoff::immediate(3))
                .with_timeout(Duration::from_secs(120))
        }

        /// `verb` prints `stdout`.
        fn answers(&self, verb: &str, stdout: &str) {
            std::fs::write(self.dir.path().join(format!("{verb}.stdout")), stdout).unwrap();
        }

        /// `verb` fails with `stderr` the first `times` calls.
        fn fails(&self, verb: &str, stderr: &str, times: u32) {
            std::fs::write(self.dir.path().join(format!("{verb}.stderr")), stderr).unwrap();
            std::fs::write(self.dir.path().join(format!("{verb}.fail-times")), times.to_string()).unwrap();
        }

        /// Each call's arguments, the private directory's path shown as `PRIVATE`.
        fn calls(&self) -> Vec<Vec<String>> {
            let text = std::fs::read_to_string(self.dir.path().join("calls")).unwrap_or_default();
            let private = regex::Regex::new(r"/[^ ]*aptc-private-[^/]+").unwrap();
            text.split("<end>\n")
                .filter(|c| !c.is_empty())
                .map(|c| c.lines().map(|l| private.replace_all(l, "PRIVATE").into_owned()).collect())
                .collect()
        }

        fn observed(&self) -> String {
            std::fs::read_to_string(self.dir.path().join("observed")).unwrap_or_default()
        }
    }

    const DEPLOYED: &str = r#"{"name":"web","info":{"status":"deployed","notes":""},"version":4,"config":{"a":1}}"#;

    fn web(chart: &str, repo: Option<&str>, version: Option<&str>, base_dir: &str) -> Unit {
        let mut unit = unit("local/default/team.svc/dev/web", &[]);
        unit.name = "svc-web-0123456789".into();
        unit.id = "0123456789".into();
        unit.k8s_namespace = "apps".into();
        unit.source = Source::Chart {
            chart: chart.into(),
            repo: repo.map(Into::into),
            version: version.map(Into::into),
            base_dir: base_dir.into(),
        };
        unit
    }

    fn prod() -> Connection {
        Connection {
            cluster: "system.prod".into(),
            kubeconfig: Some(PathBuf::from("/k/prod.yaml")),
            context: Some("prod-us".into()),
            origin: None,
        }
    }

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    const STAMP_ARGS: &str = "--post-renderer aptc-stamp --post-renderer-args=--instance=0123456789 \
--post-renderer-args=--key=local/default/team.svc/dev/web --post-renderer-args=--revision=7 \
--post-renderer-args=--namespace=team --post-renderer-args=--error-file=PRIVATE/post-render.error";

    #[test]
    fn upgrade_command_lines_for_each_kind_of_chart() {
        let fake = FakeHelm::new("v4.1.4+gfake");
        fake.answers("upgrade", DEPLOYED);
        let releases = fake.releases();
        let chart = tempfile::tempdir().unwrap();
        let base = chart.path().display().to_string();
        let values = serde_json::json!({ "replicas": 2 });
        let local = web("./", None, None, &base);
        let outcome = releases.upgrade(&prod(), &local, 7, &values).unwrap();
        assert_eq!(outcome, ReleaseOutcome::Deployed(ReleaseStatus { status: "deployed".into(), revision: 4 }));
        assert_eq!(outcome.to_string(), "deployed (helm revision 4)");
        let ambient = Connection::ambient("system.local");
        releases
            .upgrade(&ambient, &web("oci://registry.example/charts/web", None, Some("1.2.3"), "/p"), 7, &values)
            .unwrap();
        releases
            .upgrade(&ambient, &web("web", Some("https://charts.example"), Some("^2.0"), "/p"), 7, &values)
            .unwrap();
        releases.upgrade(&ambient, &web("bitnami/nginx", None, None, "/p"), 7, &values).unwrap();
        let tail = format!(
            "--wait --timeout 120s --rollback-on-failure --server-side true --force-conflicts \
--labels aptc.dev/instance=0123456789,aptc.dev/revision=7,aptc.dev/namespace=team --output json {STAMP_ARGS}"
        );
        let local_path = crate::source::absolute(&chart.path().join("./")).display().to_string();
        assert_eq!(
            fake.calls(),
            [
                args(&format!(
                    "upgrade --install svc-web-0123456789 {local_path} --namespace apps --create-namespace \
--values - --reset-values --kubeconfig /k/prod.yaml --kube-context prod-us {tail}"
                )),
                args(&format!(
                    "upgrade --install svc-web-0123456789 oci://registry.example/charts/web --version 1.2.3 \
--namespace apps --create-namespace --values - --reset-values {tail}"
                )),
                args(&format!(
                    "upgrade --install svc-web-0123456789 web --repo https://charts.example --version ^2.0 \
--namespace apps --create-namespace --values - --reset-values {tail}"
                )),
                args(&format!(
                    "upgrade --install svc-web-0123456789 bitnami/nginx --namespace apps --create-namespace \
--values - --reset-values {tail}"
                )),
            ]
        );
        // During each call: the values came on standard input (no file), and aptc's plugin came
        // first in HELM_PLUGINS, the user's directory after it, running aptc through a link.
        let observed = fake.observed();
        assert_eq!(observed.matches("values - {\"replicas\":2}\n").count(), 4, "{observed}");
        let plugins =
            regex::Regex::new(r"plugins (/\S*aptc-private-[^/]+)/plugins:/home/u/.local/share/helm/plugins\n").unwrap();
        assert_eq!(plugins.find_iter(&observed).count(), 4, "{observed}");
        assert_eq!(observed.matches("link /opt/aptc/bin/aptc\n").count(), 4, "{observed}");
        assert!(
            observed.contains(r#""command":"${HELM_PLUGIN_DIR}/aptc""#)
                && observed.contains(r#""type":"postrenderer/v1""#)
                && observed.contains(r#""args":["__post-render"]"#),
            "{observed}"
        );
        // …and everything is gone afterwards.
        for dir in plugins.captures_iter(&observed) {
            assert!(!Path::new(&dir[1]).exists(), "{} is left behind", &dir[1]);
        }
    }

    #[test]
    fn helm_3_gets_atomic_and_the_executable_as_post_renderer() {
        let fake = FakeHelm::new("v3.17.3+g123");
        fake.answers("upgrade", DEPLOYED);
        let chart = tempfile::tempdir().unwrap();
        fake.releases()
            .upgrade(
                &Connection::ambient("system.local"),
                &web("./", None, None, &chart.path().display().to_string()),
                7,
                &serde_json::json!({}),
            )
            .unwrap();
        let call = fake.calls().remove(0);
        assert!(call.contains(&"--atomic".to_string()) && !call.contains(&"--rollback-on-failure".to_string()));
        let at = call.iter().position(|a| a == "--post-renderer").unwrap();
        assert_eq!(
            call[at + 1..at + 4],
            ["/opt/aptc/bin/aptc", "--post-renderer-args=__post-render", "--post-renderer-args=--instance=0123456789"]
        );
        assert!(!fake.observed().contains("plugins "), "no plugin directory for Helm 3");
    }

    #[test]
    fn a_missing_local_chart_or_a_manifests_unit_fails_before_helm_runs() {
        let fake = FakeHelm::new("v4.1.4+gfake");
        let releases = fake.releases();
        let error = releases
            .upgrade(&prod(), &web("./nope", None, None, "/nonexistent"), 1, &serde_json::json!({}))
            .unwrap_err();
        assert!(matches!(error, HelmError::ChartMissing(_)));
        assert_eq!(error.to_string(), "the chart /nonexistent/nope does not exist");
        let mut manifests = web("x", None, None, "/p");
        manifests.source = Source::Manifests { glob: "k8s/*.yaml".into(), base_dir: "/p".into() };
        assert!(
            releases
                .upgrade(&prod(), &manifests, 1, &serde_json::json!({}))
                .unwrap_err()
                .to_string()
                .contains("is not a chart instance")
        );
        assert!(fake.calls().is_empty());
    }

    #[test]
    fn uninstall_status_and_manifest_command_lines() {
        let fake = FakeHelm::new("v4.1.4+gfake");
        let releases = fake.releases();
        let unit = web("oci://r/web", None, None, "/p");
        fake.answers("status", r#"{"name":"svc-web-0123456789","info":{"status":"pending-upgrade"},"version":9}"#);
        let status = releases.status(&prod(), &unit).unwrap().unwrap();
        assert_eq!(status, ReleaseStatus { status: "pending-upgrade".into(), revision: 9 });
        assert!(status.is_pending() && !status.is_deployed());
        fake.answers("get-manifest", "---\nkind: ConfigMap\n");
        assert_eq!(releases.manifest(&Connection::ambient("system.local"), &unit).unwrap(), "---\nkind: ConfigMap\n");
        assert_eq!(releases.uninstall(&prod(), &unit).unwrap(), ReleaseOutcome::Uninstalled);
        assert_eq!(
            fake.calls(),
            [
                args(
                    "status svc-web-0123456789 --namespace apps --kubeconfig /k/prod.yaml --kube-context prod-us --output json"
                ),
                args("get manifest svc-web-0123456789 --namespace apps"),
                args(
                    "uninstall svc-web-0123456789 --namespace apps --kubeconfig /k/prod.yaml --kube-context prod-us --wait --timeout 120s"
                ),
            ]
        );
    }

    #[test]
    fn a_release_that_does_not_exist_has_no_status_and_is_already_uninstalled() {
        let fake = FakeHelm::new("v4.1.4+gfake");
        let releases = fake.releases();
        let unit = web("oci://r/web", None, None, "/p");
        fake.fails("status", "Error: release: not found\n", 1000);
        fake.fails("uninstall", "Error: uninstall: Release not loaded: svc-web-0123456789: release: not found\n", 1000);
        assert_eq!(releases.status(&prod(), &unit).unwrap(), None);
        assert_eq!(releases.uninstall(&prod(), &unit).unwrap(), ReleaseOutcome::AlreadyGone);
        assert_eq!(fake.calls().len(), 2, "not found is an answer, not retried");
    }

    #[test]
    fn transient_failures_are_retried_and_permanent_ones_are_not() {
        let fake = FakeHelm::new("v4.1.4+gfake");
        let releases = fake.releases();
        let unit = web("oci://r/web", None, None, "/p");
        fake.answers("upgrade", DEPLOYED);
        fake.fails("upgrade", "Error: Get \"https://10.0.0.1/version\": net/http: TLS handshake timeout\n", 2);
        assert!(releases.upgrade(&prod(), &unit, 1, &serde_json::json!({})).is_ok());
        assert_eq!(fake.calls().len(), 3, "two transient failures, then success");

        fake.fails("status", "Error: the server is currently unable to handle the request\n", 1000);
        let error = releases.status(&prod(), &unit).unwrap_err().to_string();
        assert_eq!(fake.calls().len(), 6, "three attempts in all");
        assert!(error.contains("unable to handle the request"), "{error}");

        fake.fails(
            "uninstall",
            "Error: uninstall: failed to delete release: secrets is forbidden: User \"x\" cannot delete\n\n",
            1000,
        );
        let error = releases.uninstall(&prod(), &unit).unwrap_err().to_string();
        assert_eq!(fake.calls().len(), 7, "a permanent failure is not retried");
        assert_eq!(
            error,
            "helm uninstall of release svc-web-0123456789 (namespace apps) on system.prod (context prod-us in \
/k/prod.yaml) failed: uninstall: failed to delete release: secrets is forbidden: User \"x\" cannot delete"
        );
    }

    #[test]
    fn a_pending_release_fails_at_once_saying_how_to_unlock_it() {
        let fake = FakeHelm::new("v4.1.4+gfake");
        let releases = fake.releases();
        let unit = web("oci://r/web", None, None, "/p");
        fake.fails(
            "upgrade",
            "Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress\n",
            1000,
        );
        fake.answers("status", r#"{"info":{"status":"pending-install"},"version":1}"#);
        let error = releases.upgrade(&prod(), &unit, 1, &serde_json::json!({})).unwrap_err().to_string();
        assert!(error.contains("svc-web-0123456789 (namespace apps) on system.prod (context prod-us in /k/prod.yaml) is pending-install"), "{error}");
        assert!(
            error.contains(
                "`helm uninstall svc-web-0123456789 -n apps --kubeconfig /k/prod.yaml --kube-context prod-us`"
            ),
            "{error}"
        );
        fake.answers("status", r#"{"info":{"status":"pending-upgrade"},"version":3}"#);
        let error = releases.upgrade(&prod(), &unit, 1, &serde_json::json!({})).unwrap_err().to_string();
        assert!(
            error.contains("is pending-upgrade") && error.contains("`helm rollback svc-web-0123456789 -n apps"),
            "{error}"
        );
        let upgrades = fake.calls().iter().filter(|c| c[0] == "upgrade").count();
        assert_eq!(upgrades, 2, "never retried");
    }

    #[test]
    fn a_locked_release_of_aptc_is_recovered_and_another_is_left_alone() {
        let fake = FakeHelm::new("v4.1.4+gfake");
        let releases = fake.releases();
        let unit = web("oci://r/web", None, None, "/p");
        fake.answers("status", r#"{"info":{"status":"pending-upgrade"},"version":5}"#);
        fake.answers("get-metadata", r#"{"name":"svc-web-0123456789","labels":{"aptc.dev/instance":"0123456789"}}"#);
        fake.answers(
            "history",
            r#"[{"revision":2,"status":"superseded"},{"revision":3,"status":"deployed"},{"revision":4,"status":"failed"},{"revision":5,"status":"pending-upgrade"}]"#,
        );
        let done = releases.recover(&prod(), &unit, &Guard::NONE).unwrap().unwrap();
        assert_eq!(
            done,
            "recovered release svc-web-0123456789: an interrupted operation left it pending-upgrade; rolled back to helm revision 3"
        );
        let calls = fake.calls();
        assert_eq!(
            calls.last().unwrap(),
            &args(
                "rollback svc-web-0123456789 3 --namespace apps --kubeconfig /k/prod.yaml --kube-context prod-us \
--wait --timeout 120s --server-side true --force-conflicts"
            )
        );
        // Never deployed: uninstalled.
        fake.answers("history", r#"[{"revision":1,"status":"pending-install"}]"#);
        let done = releases.recover(&prod(), &unit, &Guard::NONE).unwrap().unwrap();
        assert!(done.ends_with("left it pending-upgrade; uninstalled (it was never deployed)"), "{done}");
        assert_eq!(fake.calls().last().unwrap()[0], "uninstall");
        // Another tool's release (or another instance's): left for its owner.
        fake.answers("get-metadata", r#"{"labels":{"aptc.dev/instance":"someone-else"}}"#);
        let before = fake.calls().len();
        assert_eq!(releases.recover(&prod(), &unit, &Guard::NONE).unwrap(), None);
        assert!(fake.calls()[before..].iter().all(|c| c[0] != "rollback" && c[0] != "uninstall"));
        // Not locked: nothing to do.
        fake.answers("status", r#"{"info":{"status":"deployed"},"version":5}"#);
        assert_eq!(releases.recover(&prod(), &unit, &Guard::NONE).unwrap(), None);
    }

    #[test]
    fn the_post_renderer_stamps_every_object_and_refuses_what_is_not_one() {
        let with =
            Stamp { instance_id: "abc".into(), instance_key: "k/a/b".into(), revision: 3, namespace: "team".into() };
        let out = post_render(
            "---\n# Source: c/templates/a.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n",
            &with,
        )
        .unwrap();
        assert!(out.contains("# Source: c/templates/a.yaml") && out.contains("aptc.dev/instance: abc"), "{out}");
        assert!(post_render("just: data\n", &with).unwrap_err().to_string().contains("no `kind`"));
    }

    #[test]
    fn transient_messages_are_recognised_whatever_their_case() {
        assert!(Failure::helm("dial tcp 127.0.0.1:1: connect: connection refused").is_transient());
        assert!(Failure::helm("the server has received too many requests (Too Many Requests)").is_transient());
        assert!(Failure::helm("read tcp: connection reset by peer").is_transient());
        assert!(!Failure::helm("chart \"web\" version \"9.9.9\" not found").is_transient());
    }

    /// Every flag aptc gives Helm is one the pinned Helm accepts: each command line the product
    /// builds (every kind of chart, every verb) is checked against `helm COMMAND --help` of the
    /// real binary, so a flag a new Helm dropped fails here, not against a live cluster.
    #[test]
    fn every_flag_is_accepted_by_the_pinned_helm() {
        let Ok(real) = Helm::locate(None) else {
            eprintln!("skipped: no helm installed (tools/install-helm.sh installs the pinned one)");
            return;
        };
        let fake = FakeHelm::new("v4.1.4+gfake");
        fake.answers("upgrade", DEPLOYED);
        fake.answers("status", r#"{"name":"web","info":{"status":"pending-upgrade"},"version":4}"#);
        fake.answers("get-metadata", r#"{"labels":{"aptc.dev/instance":"0123456789"}}"#);
        fake.answers("history", r#"[{"revision":3,"status":"superseded"},{"revision":4,"status":"pending-upgrade"}]"#);
        let releases = fake.releases();
        let values = serde_json::json!({});
        let chart = tempfile::tempdir().unwrap();
        let base = chart.path().display().to_string();
        for unit in [
            web("./", None, None, &base),
            web("oci://r/web", None, Some("1.2.3"), "/p"),
            web("web", Some("https://charts.example"), Some("^2.0"), "/p"),
        ] {
            for connection in [prod(), Connection::ambient("system.local")] {
                let _ = releases.recover(&connection, &unit, &Guard::NONE);
                let _ = releases.upgrade(&connection, &unit, 7, &values);
                let _ = releases.status(&connection, &unit);
                let _ = releases.manifest(&connection, &unit);
                let _ = releases.uninstall(&connection, &unit);
            }
            let _ = releases.template(&unit, 7, &values);
        }
        let calls = fake.calls();
        let verbs: BTreeSet<&str> = calls.iter().map(|c| c[0].as_str()).collect();
        assert_eq!(verbs, BTreeSet::from(["get", "history", "rollback", "status", "template", "uninstall", "upgrade"]));
        let flag = regex::Regex::new(r"--[a-z][a-z0-9-]*").unwrap();
        let mut accepted: HashMap<Vec<String>, BTreeSet<String>> = HashMap::new();
        for call in &calls {
            let command: Vec<String> = call.iter().take(if call[0] == "get" { 2 } else { 1 }).cloned().collect();
            let known = accepted.entry(command.clone()).or_insert_with(|| {
                let help = Command::new(&real.path).args(&command).arg("--help").output().unwrap();
                assert!(help.status.success(), "helm {command:?} --help failed");
                flag.find_iter(&String::from_utf8_lossy(&help.stdout)).map(|m| m.as_str().to_string()).collect()
            });
            for given in call.iter().filter(|a| a.starts_with("--")) {
                let name = given.split('=').next().unwrap_or(given);
                assert!(known.contains(name), "helm {} has no flag {name} (in {call:?})", command.join(" "));
            }
        }
    }
}
