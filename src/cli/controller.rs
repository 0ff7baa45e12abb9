//! `aptc controller manifests` and `aptc controller run`: the controller's install objects and the
//! controller itself (`aptc_controller`); this module only parses arguments and prints.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use aptc_controller::lease::Election;
use aptc_controller::manifests::{Install, PROBE_PORT, WEBHOOK_PORT, manifests, to_yaml};
use aptc_controller::push::Target;
use aptc_controller::run::Options;
use aptc_runtime::credentials::Home;
use aptc_runtime::deployer::{TargetChoice, Targets};
use aptc_runtime::helm::HelmError;
use aptc_runtime::store::{KubeLocation, Location};
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct ControllerArgs {
    #[command(subcommand)]
    command: ControllerCommand,
}

#[derive(Debug, Subcommand)]
enum ControllerCommand {
    /// Print what installs the controller, as YAML: the CRDs, a ServiceAccount, RBAC, the
    /// admission policy for claims, the webhook configuration for bundles, a Service and a
    /// Deployment (`| kubectl apply -f -`).
    Manifests(ManifestsArgs),
    /// Run the controller: watch PolicyBundles and Claims, resolve, apply to the declared
    /// clusters (while holding the leader Lease), write statuses; serve the bundle webhook
    /// (HTTPS) and /healthz, /readyz, /metrics (HTTP). Stops cleanly on SIGTERM or SIGINT.
    Run(Box<RunArgs>),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The control cluster's kubeconfig (default: $KUBECONFIG, ~/.kube/config, else the
    /// in-cluster service account).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The context in it (default: its current context).
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Where rendered output and unpacked bundles are kept (the revisions are kept in the cluster:
    /// ConfigMaps in --namespace, docs/controller.md).
    #[arg(long, value_name = "DIR", default_value = "/tmp/aptc-controller")]
    work_dir: PathBuf,
    /// The controller's own namespace (its leader Lease is there).
    #[arg(long, env = "POD_NAMESPACE", default_value = "aptc-system")]
    namespace: String,
    /// This replica's name in the Lease.
    #[arg(long, env = "POD_NAME", default_value = "aptc-controller")]
    identity: String,
    /// Where /healthz, /readyz and /metrics are served (HTTP).
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], PROBE_PORT)))]
    probe_addr: SocketAddr,
    /// Where the admission webhook is served (HTTPS).
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], WEBHOOK_PORT)))]
    webhook_addr: SocketAddr,
    /// The webhook's certificate (PEM; e.g. cert-manager's Secret, mounted). Without it one is
    /// generated and its CA written into the webhook configuration.
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The key of --tls-cert (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Seconds between two comparisons of the clusters with the last revision (drift).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    interval: u64,
    /// Seconds a leader Lease not renewed still belongs to its holder; the leader renews it every
    /// third of this, and a standby takes over at most this plus a third after the leader's last
    /// renewal.
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=3_600))]
    lease_duration: u64,
    /// Where the dashboard (the pages of `aptc ui`, over the controller's policy, desired state
    /// and revisions) is served. Loopback by default (reach it with `kubectl port-forward`); any
    /// other address requires the token the controller logs at start. `none`: not served.
    #[arg(long, value_name = "ADDR|none", default_value = "127.0.0.1:8090", value_parser = ui_addr)]
    ui_addr: UiAddr,
    /// The Helm binary (default: APTC_HELM, PATH, ./.tools/bin/helm).
    #[arg(long, value_name = "PATH", env = "APTC_HELM")]
    helm: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ManifestsArgs {
    /// The Kubernetes namespace the controller runs in.
    #[arg(long, default_value = "aptc-system")]
    namespace: String,
    /// The controller's container image (built from the repository's Dockerfile).
    #[arg(long, default_value = concat!("aptc:", env!("CARGO_PKG_VERSION")))]
    image: String,
    /// Replicas: one leads, the others stand by.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    replicas: u32,
    /// A Secret of the controller's namespace that the policy names: a cluster's kubeconfig
    /// (`kubeconfig secret "NAME"`), a value (`secret_k8s("NAME", KEY)`) or a Git source's
    /// credentials (`spec.git.secretRef`). The Role lets the controller get it, by name. Repeat
    /// for each; none by default.
    #[arg(long = "secret", visible_alias = "kubeconfig-secret", value_name = "NAME")]
    secrets: Vec<String>,
}

pub fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ControllerCommand::Manifests(args) => {
            let install = Install {
                namespace: args.namespace,
                image: args.image,
                replicas: args.replicas,
                secrets: args.secrets,
            };
            print!("{}", to_yaml(&manifests(&install))?);
            Ok(ExitCode::SUCCESS)
        }
        ControllerCommand::Run(args) => {
            let targets = Targets {
                choice: TargetChoice::Cluster,
                out: None,
                default_out: args.work_dir.join("out"),
                helm: args.helm,
                post_renderer: std::env::current_exe().map_err(|e| HelmError::io("finding the aptc executable", e)),
                // Clusters' kubeconfig Secrets are read in the controller's own namespace of the
                // control cluster, which is also what `kubeconfig in_cluster` reaches.
                home: Home {
                    kubeconfig: args.kubeconfig.clone(),
                    context: args.context.clone(),
                    namespace: Some(args.namespace.clone()),
                },
            };
            // The revisions live in the control cluster, beside the Lease: every replica sees them.
            let state = Location::Kube(KubeLocation {
                kubeconfig: args.kubeconfig.clone(),
                context: args.context.clone(),
                namespace: args.namespace.clone(),
            });
            aptc_controller::run::run(Options {
                target: Target { kubeconfig: args.kubeconfig, context: args.context },
                state,
                work: args.work_dir,
                namespace: args.namespace,
                identity: args.identity,
                probe_addr: args.probe_addr,
                webhook_addr: args.webhook_addr,
                tls: args.tls_cert.zip(args.tls_key),
                targets,
                interval: Duration::from_secs(args.interval),
                election: Election::lasting(Duration::from_secs(args.lease_duration)),
                ui: args.ui_addr.0,
            })?;
            Ok(ExitCode::from(super::EXIT_INTERRUPTED))
        }
    }
}

/// `--ui-addr`: where the dashboard is served, if anywhere.
#[derive(Clone, Debug)]
struct UiAddr(Option<SocketAddr>);

/// `--ui-addr`: an address, or `none`.
fn ui_addr(text: &str) -> Result<UiAddr, String> {
    if text == "none" {
        return Ok(UiAddr(None));
    }
    text.parse()
        .map(|addr| UiAddr(Some(addr)))
        .map_err(|e| format!("{e} (an address such as 127.0.0.1:8090, or `none`)"))
}
