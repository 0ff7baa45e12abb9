//! `aptc push [PATHS]`: the policy's bundles (one per `.apt` namespace) applied to the control
//! cluster where `aptc controller` runs (`aptc_controller::push`); a line per bundle. With
//! `--git-url`, the bundles name a commit the controller fetches instead of carrying the files.

use std::path::PathBuf;
use std::process::ExitCode;

use aptc_compiler::host::paths_or_cwd;
use aptc_controller::bundle::BundleError;
use aptc_controller::push::{Change, GitPush, PushError, Target, push_paths};
use clap::Args;

use super::EXIT_FINDINGS;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Policy files or directories. Default: the policy of the current directory.
    paths: Vec<PathBuf>,
    /// The kubeconfig of the control cluster (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, value_name = "PATH")]
    kubeconfig: Option<PathBuf>,
    /// The context in it (default: its current context).
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Push bundles naming a commit of this Git repository (as the controller reaches it) instead
    /// of carrying the files; the paths must be in a checkout of it, their files as committed.
    #[arg(long, value_name = "URL")]
    git_url: Option<String>,
    /// The commit the bundles name: a full commit id (default: the checkout's HEAD).
    #[arg(long, value_name = "COMMIT", requires = "git_url")]
    revision: Option<String>,
    /// The Secret of the controller's namespace holding the repository's credentials
    /// (`username`/`password` for https, `ssh-privatekey` and `known_hosts` for ssh), named in
    /// each bundle's `spec.git.secretRef`; the controller's Role must let it get it.
    #[arg(long, value_name = "NAME", requires = "git_url")]
    git_secret: Option<String>,
}

pub fn run(args: PushArgs) -> anyhow::Result<ExitCode> {
    let paths = paths_or_cwd(&args.paths)?;
    if let Some(missing) = paths.iter().find(|path| !path.exists()) {
        anyhow::bail!("{}: no such file or directory", missing.display());
    }
    let target = Target { kubeconfig: args.kubeconfig, context: args.context };
    let git = args.git_url.map(|url| GitPush { url, revision: args.revision, secret: args.git_secret });
    let pushed = match push_paths(&paths, git.as_ref(), &target) {
        Err(PushError::Bundle(BundleError::Invalid { count, rendered })) => {
            eprint!("{rendered}");
            eprintln!("error: the policy has {count} error(s); nothing was pushed");
            return Ok(ExitCode::from(EXIT_FINDINGS));
        }
        other => other?,
    };
    let mut refused = 0;
    for bundle in &pushed {
        match &bundle.outcome {
            Ok(change) => {
                let what = match change {
                    Change::Created => "created",
                    Change::Updated => "updated",
                    Change::Unchanged => "unchanged",
                };
                let from = match &bundle.revision {
                    Some(commit) => format!(" (commit {})", commit.get(..12).unwrap_or(commit)),
                    None => String::new(),
                };
                println!("policybundle/{} (namespace {}) {what}{from}", bundle.name, bundle.namespace);
            }
            Err(error) => {
                refused += 1;
                println!(
                    "policybundle/{} (namespace {}) not pushed: {}",
                    bundle.name,
                    bundle.namespace,
                    super::words::printable(&error.to_string())
                );
            }
        }
    }
    println!("{} pushed, {refused} not", super::words::count(pushed.len() - refused, "bundle"));
    Ok(if refused == 0 { ExitCode::SUCCESS } else { ExitCode::from(EXIT_FINDINGS) })
}
