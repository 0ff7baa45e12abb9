//! `aptc ui`: the dashboard (the `aptc-ui` crate) on the local policy and its store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use aptc_compiler::host::paths_or_cwd;
use aptc_ui::server::App;
use aptc_ui::source::LocalSource;
use aptc_ui::target::Deploys;
use clap::Args;

use super::deploy::{RunArgs, Target};
use aptc_runtime::store::Location;

use super::store::{policy_root, state_location};

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Policy files or directories. Default: the current directory.
    paths: Vec<PathBuf>,
    /// Where to listen. Any address other than loopback requires a token, generated and printed
    /// at start, on every request.
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// Open the dashboard in the desktop's browser.
    #[arg(long)]
    open: bool,
    /// Allow rollbacks from the page, as the user `--as` names, authorised exactly as `aptc
    /// rollback --as USER` (without it the dashboard is read-only).
    #[arg(long, requires = "user")]
    allow_rollback: bool,
    /// The revision store (default: .aptc/state.db under the policy root).
    /// PATH is a file; kube://CONTEXT/NAMESPACE keeps the revisions as ConfigMaps in NAMESPACE of
    /// the kubeconfig's CONTEXT (empty: its current context), shared by everyone deploying there.
    #[arg(long, value_name = "PATH|kube://CONTEXT/NAMESPACE", env = "APTC_STATE", value_parser = super::store::parse_state())]
    state: Option<Location>,
    /// Where deploys apply (for drift and rollback), as for `aptc deploy`.
    #[arg(long, value_enum, env = "APTC_TARGET", default_value_t = Target::Auto)]
    target: Target,
    /// Where deploys render, as for `aptc deploy`.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The helm binary (default: `helm` on PATH, then ./.tools/bin/helm).
    #[arg(long, value_name = "PATH", env = "APTC_HELM")]
    helm: Option<PathBuf>,
    /// Who rolls back (with --allow-rollback), as recorded in the history.
    #[arg(long = "as", value_name = "USER")]
    user: Option<String>,
    /// At most this many instances are applied at once by a rollback.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    parallel: u16,
}

pub fn run(args: UiArgs) -> anyhow::Result<ExitCode> {
    let paths = paths_or_cwd(&args.paths)?;
    if let Some(missing) = paths.iter().find(|path| !path.exists()) {
        anyhow::bail!("{}: no such file or directory", missing.display());
    }
    let root = policy_root(&paths);
    let state = state_location(args.state.as_ref(), &root);
    let run = RunArgs {
        state: args.state.clone(),
        target: args.target,
        out: args.out,
        helm: args.helm,
        user: args.user.clone(),
        yes: false,
        parallel: args.parallel,
    };
    let deploys = Deploys {
        targets: run.targets(&root),
        policy_root: root,
        explicit_state: args.state.is_some(),
        rollback_as: args.allow_rollback.then(|| run.identity()),
        parallel: usize::from(args.parallel),
    };
    let app = App::new(Arc::new(LocalSource::new(paths, state)), Some(deploys.clone()));
    aptc_ui::run(args.listen, app, |started| {
        println!("aptc ui: {}", started.url);
        if started.token.is_some() {
            println!(
                "listening beyond this machine: every API request must carry the token (it is in the address above; open that address)"
            );
        }
        match &deploys.rollback_as {
            Some(user) => println!("rollbacks allowed, as {user}"),
            None => println!("read-only (start with --as USER --allow-rollback to allow rollbacks)"),
        }
        if args.open
            && let Err(error) = aptc_ui::open_browser(&started.url)
        {
            eprintln!("could not open a browser: {error}");
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
