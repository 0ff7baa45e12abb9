//! `aptc controller manifests` and `aptc controller run`: the controller's install objects and the
//! controller itself (`aptc_controller`); this module only parses arguments and prints.

use std::process::ExitCode;

use aptc_controller::manifests::{Install, manifests, to_yaml};
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
}

pub fn run(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ControllerCommand::Manifests(args) => {
            let install = Install { namespace: args.namespace, image: args.image, replicas: args.replicas };
            print!("{}", to_yaml(&manifests(&install))?);
            Ok(ExitCode::SUCCESS)
        }
    }
}
