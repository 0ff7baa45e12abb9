//! `aptc controller run`: the controller's process. Reflectors (kube's `watcher`) keep every
//! PolicyBundle and Claim in memory; any change (or the requeue time the runtime's reconciler
//! asks for) runs an [`Engine`] step on the leader, on a thread of its own (the runtime's driver
//! blocks), and its statuses are written by server-side apply to the status subresources. Every
//! replica serves the probes, the metrics and the webhook, and keeps the policy in use current for
//! the webhook; only the Lease holder ([`crate::lease`]) applies. SIGTERM or SIGINT: running
//! actions finish (the runtime's `Cancel`), the Lease is released, and it exits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use aptc_runtime::cancel::Cancel;
use aptc_runtime::deployer::Targets;
use aptc_runtime::store::Location;
use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, Resource};
use serde_json::json;
use thiserror::Error;
use tokio::sync::{Notify, oneshot};

use crate::crd::{Claim, PolicyBundle, kube_name};
use crate::engine::{Engine, EngineError, Step};
use crate::manifests::{LEASE, NAME, WEBHOOK_CONFIGURATION};
use crate::policy::{self, Archives};
use crate::push::{PushError, Target};
use crate::serve::{self, Certificate, ServeError, Shared, StateLabel};

/// The field manager of the controller's status writes.
pub const FIELD_MANAGER: &str = "aptc-controller";

/// How long changes are gathered before a step (a push of several bundles is one step).
const SETTLE: Duration = Duration::from_millis(300);

/// How the controller runs.
pub struct Options {
    /// The control cluster: a kubeconfig and context, or (both `None`) the ambient configuration
    /// (`$KUBECONFIG`, `~/.kube/config`, else the in-cluster service account).
    pub target: Target,
    /// Where the revisions are kept (`aptc controller run`: a Kubernetes store in the controller's
    /// namespace of the control cluster, shared by every replica).
    pub state: Location,
    /// Where rendered output and unpacked bundles go.
    pub work: PathBuf,
    /// The controller's own Kubernetes namespace (its Lease is there).
    pub namespace: String,
    /// This replica's name in the Lease.
    pub identity: String,
    pub probe_addr: SocketAddr,
    pub webhook_addr: SocketAddr,
    /// The webhook's certificate and key (PEM files, e.g. cert-manager's Secret mounted); `None`:
    /// generate one and write its CA into the webhook configuration.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// How the runtime applies (the cluster driver, Helm).
    pub targets: Targets,
    /// How often the targets are compared with the last revision.
    pub interval: Duration,
}

/// Why the controller could not run.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Client(#[from] PushError),
    #[error("connecting to the cluster: {0}")]
    Connect(String),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("reading {path}: {source}")]
    Tls {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting: {0}")]
    Runtime(#[source] std::io::Error),
}

/// A step for the engine's thread.
struct Job {
    bundles: Vec<PolicyBundle>,
    claims: Vec<Claim>,
    reply: oneshot::Sender<Step>,
}

/// Runs the controller until SIGTERM or SIGINT.
pub fn run(options: Options) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(RunError::Runtime)?;
    runtime.block_on(run_async(options))
}

async fn run_async(options: Options) -> Result<(), RunError> {
    // The handlers are installed before anything is served, so a SIGTERM is never the default
    // action (an abrupt end).
    let stop = Arc::new(Notify::new());
    tokio::spawn(signals(Signals::install().map_err(RunError::Runtime)?, stop.clone()));
    let client = if options.target.kubeconfig.is_none() && options.target.context.is_none() {
        Client::try_default().await.map_err(|e| RunError::Connect(e.to_string()))?
    } else {
        options.target.client().await?
    };
    let shared = Arc::new(Shared::new(options.work.join("admission")));
    serve::serve_http(options.probe_addr, shared.clone()).await?;
    let certificate = match &options.tls {
        Some((cert, key)) => Certificate { cert_pem: read(cert)?, key_pem: read(key)? },
        None => {
            let certificate = serve::generate_certificate(NAME, &options.namespace)?;
            write_ca_bundle(&client, &certificate.cert_pem).await;
            certificate
        }
    };
    serve::serve_https(options.webhook_addr, &certificate, shared.clone()).await?;

    let changed = Arc::new(Notify::new());
    let (bundles, bundle_writer) = reflector::store::<PolicyBundle>();
    let (claims, claim_writer) = reflector::store::<Claim>();
    let watch_bundles = reflector(bundle_writer, watcher(Api::<PolicyBundle>::all(client.clone()), Default::default()));
    let watch_claims = reflector(claim_writer, watcher(Api::<Claim>::all(client.clone()), Default::default()));
    tokio::spawn(notify_on(watch_bundles.default_backoff(), changed.clone()));
    tokio::spawn(notify_on(watch_claims.default_backoff(), changed.clone()));

    let cancel = Cancel::default();
    let jobs = start_engine(&options, cancel.clone()).await?;
    tokio::select! {
        _ = stop.notified() => return Ok(()),
        ready = async { (bundles.wait_until_ready().await, claims.wait_until_ready().await) } => {
            if let (Ok(()), Ok(())) = ready {
                shared.ready.store(true, Ordering::Relaxed);
            }
        }
    }
    tracing::info!(identity = %options.identity, "watching bundles and claims");

    let leases: Api<Lease> = Api::namespaced(client.clone(), &options.namespace);
    let mut leading = false;
    let mut last_good = Archives::new();
    let mut next_lease = Instant::now();
    let mut next_step = Instant::now();
    let mut dirty = true;
    loop {
        let wake = next_lease.min(next_step);
        tokio::select! {
            _ = stop.notified() => break,
            _ = changed.notified() => {
                dirty = true;
                tokio::time::sleep(SETTLE).await;
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
        if Instant::now() >= next_lease {
            let now_leading = crate::lease::round(&leases, LEASE, &options.identity).await;
            if now_leading != leading {
                tracing::info!(leading = now_leading, identity = %options.identity, "leadership changed");
                dirty = true;
            }
            leading = now_leading;
            shared.metrics.leader.set(i64::from(leading));
            next_lease = Instant::now() + crate::lease::RENEW_EVERY;
        }
        if !dirty && Instant::now() < next_step {
            continue;
        }
        dirty = false;
        let bundle_list: Vec<PolicyBundle> = bundles.state().iter().map(|b| (**b).clone()).collect();
        let claim_list: Vec<Claim> = claims.state().iter().map(|c| (**c).clone()).collect();
        if leading {
            let started = Instant::now();
            let (reply, answer) = oneshot::channel();
            if jobs.send(Job { bundles: bundle_list.clone(), claims: claim_list.clone(), reply }).is_err() {
                tracing::error!("the engine stopped");
                break;
            }
            let Ok(step) = answer.await else { break };
            shared.metrics.reconciles.inc();
            shared.metrics.reconcile_seconds.observe(started.elapsed().as_secs_f64());
            shared.metrics.apply_failures.inc_by(step.apply_failures as u64);
            if let Some(why) = &step.not_applied {
                tracing::warn!(%why, "not applied");
            }
            write_statuses(&client, &step, &bundle_list, &claim_list).await;
            count_claims(&shared, &step);
            last_good = step.used.clone();
            *shared.used.write().unwrap_or_else(|e| e.into_inner()) = step.used;
            next_step = Instant::now() + step.requeue_after;
        } else {
            // A standby keeps the policy in use current for the webhook, as the leader does.
            let current = archives(&bundle_list);
            let (work, previous) = (options.work.join("standby"), last_good.clone());
            let assembled = tokio::task::spawn_blocking(move || {
                policy::assemble(&current, &previous, &work).map(|a| a.used).map_err(|e| e.to_string())
            })
            .await;
            match assembled {
                Ok(Ok(used)) => {
                    last_good = used.clone();
                    *shared.used.write().unwrap_or_else(|e| e.into_inner()) = used;
                }
                Ok(Err(error)) => tracing::warn!(%error, "assembling the policy"),
                Err(error) => tracing::warn!(%error, "assembling the policy"),
            }
            next_step = Instant::now() + options.interval;
        }
    }
    tracing::info!("stopping: finishing running actions, releasing the Lease");
    cancel.cancel();
    drop(jobs);
    if leading {
        crate::lease::release(&leases, LEASE, &options.identity).await;
    }
    Ok(())
}

fn read(path: &PathBuf) -> Result<String, RunError> {
    std::fs::read_to_string(path).map_err(|source| RunError::Tls { path: path.clone(), source })
}

/// The engine on a thread of its own; the sender of its jobs once it has started.
async fn start_engine(options: &Options, cancel: Cancel) -> Result<std::sync::mpsc::Sender<Job>, RunError> {
    let (jobs, queue) = std::sync::mpsc::channel::<Job>();
    let (started, result) = oneshot::channel();
    let (state, work, targets, interval) =
        (options.state.clone(), options.work.clone(), options.targets.clone(), options.interval);
    std::thread::spawn(move || {
        let mut engine = match Engine::new(&state, &work, targets, cancel, interval) {
            Ok(engine) => {
                let _ = started.send(Ok(()));
                engine
            }
            Err(error) => {
                let _ = started.send(Err(error));
                return;
            }
        };
        while let Ok(job) = queue.recv() {
            let step = engine.step(&job.bundles, &job.claims, &Time(Timestamp::now()));
            let _ = job.reply.send(step);
        }
    });
    match result.await {
        Ok(Ok(())) => Ok(jobs),
        Ok(Err(error)) => Err(error.into()),
        Err(_) => Err(RunError::Runtime(std::io::Error::other("the engine's thread ended"))),
    }
}

/// Wakes the loop on every watch event; logs watch errors (the backoff retries them).
async fn notify_on<S, E>(stream: S, changed: Arc<Notify>)
where
    S: futures::Stream<Item = Result<E, watcher::Error>>,
{
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        match event {
            Ok(_) => changed.notify_one(),
            Err(error) => tracing::warn!(%error, "watching"),
        }
    }
}

/// SIGTERM and SIGINT, listened for.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }
}

/// Tells `stop` once SIGTERM or SIGINT arrives.
async fn signals(mut signals: Signals, stop: Arc<Notify>) {
    #[cfg(unix)]
    tokio::select! {
        _ = signals.term.recv() => {}
        _ = signals.int.recv() => {}
    }
    #[cfg(not(unix))]
    {
        let _ = &mut signals;
        let _ = tokio::signal::ctrl_c().await;
    }
    stop.notify_one();
}

/// The bundles' archives by `.apt` namespace (those named after their namespace).
fn archives(bundles: &[PolicyBundle]) -> Archives {
    bundles
        .iter()
        .filter(|b| kube_name(&b.spec.namespace).as_deref() == b.metadata.name.as_deref())
        .map(|b| (b.spec.namespace.clone(), b.spec.archive.clone()))
        .collect()
}

/// Writes each status that differs from the object's, by server-side apply of the status
/// subresource; a failed write is logged and retried at the next step.
async fn write_statuses(client: &Client, step: &Step, bundles: &[PolicyBundle], claims: &[Claim]) {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let bundle_api: Api<PolicyBundle> = Api::all(client.clone());
    let had: BTreeMap<&str, _> =
        bundles.iter().filter_map(|b| Some((b.metadata.name.as_deref()?, b.status.as_ref()))).collect();
    for (name, status) in &step.bundles {
        if had.get(name.as_str()).copied().flatten() == Some(status) {
            continue;
        }
        let body = json!({
            "apiVersion": PolicyBundle::api_version(&()), "kind": PolicyBundle::kind(&()),
            "metadata": { "name": name }, "status": status
        });
        if let Err(error) = bundle_api.patch_status(name, &params, &Patch::Apply(&body)).await {
            tracing::warn!(bundle = %name, %error, "writing the status");
        }
    }
    for claim in claims {
        let (Some(namespace), Some(name)) = (&claim.metadata.namespace, &claim.metadata.name) else { continue };
        let Some(status) = step.claims.get(&(namespace.clone(), name.clone())) else { continue };
        if claim.status.as_ref() == Some(status) {
            continue;
        }
        let body = json!({
            "apiVersion": Claim::api_version(&()), "kind": Claim::kind(&()),
            "metadata": { "name": name, "namespace": namespace }, "status": status
        });
        let api: Api<Claim> = Api::namespaced(client.clone(), namespace);
        if let Err(error) = api.patch_status(name, &params, &Patch::Apply(&body)).await {
            tracing::warn!(claim = %format!("{namespace}/{name}"), %error, "writing the status");
        }
    }
}

/// `aptc_claims{state}` from a step.
fn count_claims(shared: &Shared, step: &Step) {
    let mut counts: BTreeMap<String, i64> =
        ["Pending", "Resolved", "Ready", "Rejected", "Failed"].iter().map(|s| (s.to_string(), 0)).collect();
    for status in step.claims.values() {
        *counts.entry(status.state.clone().unwrap_or_default()).or_default() += 1;
    }
    for (state, count) in counts {
        shared.metrics.claims.get_or_create(&StateLabel { state }).set(count);
    }
}

/// Writes the generated certificate (its own CA) into the webhook configuration's `caBundle`.
async fn write_ca_bundle(client: &Client, cert_pem: &str) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let patch = json!({
        "webhooks": [{
            "name": "policybundles.aptc.dev",
            "clientConfig": { "caBundle": data_encoding::BASE64.encode(cert_pem.as_bytes()) }
        }]
    });
    if let Err(error) = api.patch(WEBHOOK_CONFIGURATION, &PatchParams::default(), &Patch::Strategic(&patch)).await {
        tracing::warn!(%error, "writing the webhook's CA bundle (bundles are not admitted until it is written)");
    }
}
