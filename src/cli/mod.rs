//! Command-line arguments and dispatch.

mod build;
mod check;
mod checkout;
mod completions;
mod controller;
mod deploy;
mod diff;
mod explain;
mod fmt;
mod graph;
mod history;
mod lsp;
mod man;
mod plan;
mod policy;
mod post_render;
mod push;
mod signals;
mod store;
mod test;
mod ui;
mod verify;
mod watch;
mod words;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::LazyLock;

use clap::{Parser, Subcommand, ValueEnum};

/// Exit code when the policy has errors (or warnings under `--deny-warnings`), a test failed, an
/// apply failed or was refused; also `diff --exit-code` and `fmt --check` when there are changes.
pub const EXIT_FINDINGS: u8 = 1;
/// Exit code for bad usage or unreadable files (clap's own usage errors exit 2 too).
pub const EXIT_USAGE: u8 = 2;
/// Exit code after SIGINT or SIGTERM stopped a command (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = signals::EXIT_INTERRUPTED;

/// The output of a command that people read and tools parse (`explain`, `diff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Text, for people.
    Text,
    /// One versioned JSON object (docs/formats.md), for tools.
    Json,
}

/// The exit code of a command that failed with `error`, the one mapping of the library's errors
/// to codes (README "Exit codes"): a policy with errors, or no policy at all (no `.apt` file under
/// the paths `aptc check` is given), is a finding (1), for every command as for `aptc check`;
/// anything else (usage, I/O, a tool that could not run, a cluster that does not answer) is 2.
/// Commands that end without an error pick 0, [`EXIT_FINDINGS`] (tests failed, an apply failed,
/// changes under `--exit-code`/`--check`) or [`EXIT_INTERRUPTED`].
pub fn exit_code_of(error: &anyhow::Error) -> u8 {
    let finding = error.chain().any(|cause| {
        matches!(
            cause.downcast_ref::<aptc_compiler::host::PolicyError>(),
            Some(aptc_compiler::host::PolicyError::Invalid { .. })
        ) || matches!(
            cause.downcast_ref::<aptc_compiler::workspace::LoadError>(),
            Some(aptc_compiler::workspace::LoadError::NoPolicyFiles { .. })
        )
    });
    if finding { EXIT_FINDINGS } else { EXIT_USAGE }
}

/// What `error` says to a person: its message and its causes', joined by `: ` as anyhow's `{:#}`
/// joins them, without a cause that the text before it already says. Many library errors put their
/// source in their message and also name it as their source (`chart instances need helm: helm was
/// not found …`, its source `helm was not found …`): `{:#}` printed such a message twice.
pub fn error_message(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let said = cause.to_string();
        if message.contains(&said) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&said);
    }
    message
}

/// `aptc -V`: the version and the commit it was built from (`build.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("APTC_GIT_COMMIT"), ")");

/// `aptc --version` adds the versions of the formats this aptc reads and writes: whether it can
/// load an `.aptir` or a state store another aptc wrote depends on them, not on the release.
static LONG_VERSION: LazyLock<String> = LazyLock::new(|| {
    format!("{VERSION}\nIR version {}\nstore schema {}", aptc_core::ir::IR_VERSION, aptc_runtime::store::SCHEMA)
});

/// The .apt policy compiler: check, format, test, resolve and explain policies.
#[derive(Debug, Parser)]
#[command(
    name = "aptc",
    version = VERSION,
    long_version = LONG_VERSION.as_str(),
    about,
    long_about = "aptc compiles .apt policies: teams declare services, contracts, rules, clusters and \
claims; aptc checks them like a program and turns them into what runs on Kubernetes.",
    after_help = "Examples:\n  aptc check examples/             check every .apt file under examples/\n  \
aptc check --format sarif . > aptc.sarif\n  aptc fmt --check .                fail if any file is not formatted\n  \
aptc test examples/              run the policies' test blocks\n  \
aptc plan examples/guestbook     what the claims resolve to, and where\n  \
aptc explain carol_dev examples/twitter-analytics\n\n\
Exit codes, the same for every command (each command's --help details its own):\n  \
0 success; 1 the policy has errors, a test failed or an apply failed (and `diff --exit-code`,\n  \
`fmt --check`: there are changes); 2 usage or I/O error; 130 interrupted.\n\
Logs: set APTC_LOG=debug (or any tracing filter) to see what aptc does."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// When to colour output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
}

/// The "Exit codes" paragraph of a command's `--help`: `$codes` after the examples. Every
/// command's codes mean the same (see [`exit_code_of`] and README "Exit codes").
macro_rules! help {
    ($examples:literal, $codes:literal) => {
        concat!($examples, "\n\nExit codes: ", $codes)
    };
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse and check policy files; report diagnostics.
    #[command(after_help = help!("Examples:\n  aptc check                        check the current directory\n  \
aptc check examples/quickstart     check one policy tree\n  \
aptc check --format json a.apt     diagnostics as JSON\n  \
aptc check --deny-warnings .       fail CI on warnings too",
"0 clean; 1 the policy has errors (or warnings, with --deny-warnings);\n2 usage or I/O error (a path that does not exist)."))]
    Check(check::CheckArgs),
    /// Format policy files in the canonical style.
    #[command(after_help = help!("Examples:\n  aptc fmt                          format every .apt file under .\n  \
aptc fmt --check .                 list unformatted files, exit 1 if any\n  \
aptc fmt policy.apt                format one file in place",
"0 formatted (with --check: nothing to change); 1 with --check, a file would change, or a file\n\
has syntax errors (it is left alone); 2 usage or I/O error."))]
    Fmt(fmt::FmtArgs),
    /// Run the language server (LSP over standard input and output), for editors.
    #[command(after_help = help!("Editors start it themselves; see README.md, \"Editors and the language server\".\n\
Logs go to standard error: APTC_LOG=debug aptc lsp",
"0 after `shutdown` then `exit`; 1 `exit` without `shutdown` (as the protocol says); 2 usage error."))]
    Lsp(lsp::LspArgs),
    /// Lower a policy to the resolution IR (`.aptir`), for the runtime or for review.
    #[command(after_help = help!("Examples:\n  aptc build examples/quickstart -o quickstart.aptir",
"0 written; 1 the policy has errors; 2 usage or I/O error."))]
    Build(build::BuildArgs),
    /// Resolve every claim and show the desired state: which instances, where, for whom.
    #[command(after_help = help!("Examples:\n  aptc plan examples/twitter-analytics\n  \
aptc plan --format json . > desired.json",
"0 every claim resolved or was rejected by a rule; 1 the policy has errors, or a claim failed;\n\
2 usage or I/O error."))]
    Plan(plan::PlanArgs),
    /// Explain a claim's decision chain, or why an instance exists.
    #[command(after_help = help!("Examples:\n  aptc explain carol_dev examples/twitter-analytics\n  \
aptc explain social.alice_dev examples/twitter-analytics",
"0 explained; 1 the policy has errors; 2 usage or I/O error (no such claim or instance)."))]
    Explain(explain::ExplainArgs),
    /// What a policy change would do: instances added, removed, changed; claims affected.
    #[command(after_help = help!("Examples:\n  aptc diff old-policy/ new-policy/\n  \
aptc diff --git HEAD~1 policies/        the last commit's change\n  \
aptc diff --git main --exit-code .      fail CI when a change has effects",
"0 shown (with --exit-code: the change has no effect); 1 a policy has errors, or with\n\
--exit-code the change has effects; 2 usage or I/O error (git failed)."))]
    Diff(diff::DiffArgs),
    /// Draw claims and instances as a Graphviz graph (DOT, or SVG with --svg).
    #[command(after_help = help!("Examples:\n  aptc graph examples/guestbook > guestbook.dot\n  \
aptc graph --svg guestbook.svg examples/guestbook",
"0 drawn; 1 the policy has errors; 2 usage or I/O error (no `dot` for --svg)."))]
    Graph(graph::GraphArgs),
    /// Run the policy's `test` blocks: resolve with each test's claims, check its expectations.
    #[command(after_help = help!("Examples:\n  aptc test examples/twitter-analytics\n  \
aptc test examples/                  each complete policy under it (each has a `namespace system`)\n  \
aptc test --format junit . > tests.xml  JUnit XML for CI\n\n\
Prints one line per test and a summary line `N passed, N failed`.",
"0 every test passed; 1 a test failed, or a policy has errors (its tests did not run);\n\
2 usage or I/O error."))]
    Test(test::TestArgs),
    /// Prove the policy's `assert` blocks over every possible claim, or show a counterexample.
    #[command(after_help = help!("Examples:\n  aptc verify examples/guestbook\n  \
aptc verify --format json .\n  \
aptc verify --format sarif . > verify.sarif   for code scanning\n  \
aptc verify --allow-unknown examples/     every complete policy under it\n\n\
Prints one line per assertion: proved, VIOLATED (with a counterexample claim) or unknown (why).",
"0 every assertion proved (or unknown, with --allow-unknown); 1 an assertion is violated or\n\
unknown, or a policy has errors; 2 usage or I/O error."))]
    Verify(verify::VerifyArgs),
    /// Resolve, plan against the last revision, apply to the policy's clusters (Helm releases,
    /// server-side apply) or render when none is configured, and record a revision.
    #[command(after_help = help!("Examples:\n  aptc deploy --dry-run examples/quickstart     show the plan only\n  \
aptc deploy --yes examples/quickstart         to its clusters (rendered when none is configured)\n  \
aptc deploy --yes --target cluster --refresh  to the clusters, against what they hold now\n  \
aptc deploy --yes --out out/ --state out.db   render into out/, for GitOps\n  \
aptc deploy --yes --format json .             the plan and each action's result, as JSON",
"0 applied (or no changes, or a dry run); 1 the policy has errors, a claim failed, an\n\
instance failed or was skipped (run again to retry), or the plan was refused (access, mass\n\
delete); 2 usage or I/O error: no --yes without a terminal, helm missing, a cluster\n\
unreachable, the state store; 130 interrupted (SIGINT or SIGTERM: what ran is recorded)."))]
    Deploy(deploy::DeployArgs),
    /// List the deployed revisions, or show one (`history show N`).
    #[command(after_help = help!(
        "Examples:\n  aptc history\n  aptc history show 3\n  aptc history --format json --state out.db",
        "0 shown (no store yet: no revisions); 2 usage or I/O error (an unreadable store, no such\nrevision)."
    ))]
    History(history::HistoryArgs),
    /// Check a revision store for damage, or repair one (every readable revision kept).
    #[command(after_help = "Examples:\n  aptc store check\n  aptc store repair --state .aptc/state.db\n\n\
Exit codes: 0 not damaged (or repaired), 1 damaged (check), 2 no store or another error.")]
    Store(store::StoreArgs),
    /// Apply a past revision's desired state again, as a new revision.
    #[command(after_help = help!("Examples:\n  aptc rollback 2 --yes\n  aptc rollback 2 --dry-run --format json",
"0 applied (or no changes, or a dry run); 1 an instance failed or was skipped, or the plan\n\
was refused; 2 usage or I/O error (no such revision, no --yes without a terminal, helm\n\
missing, a cluster unreachable); 130 interrupted."))]
    Rollback(deploy::RollbackArgs),
    /// Keep the target as the policy says: re-plan when the policy files change, compare the
    /// clusters (or the rendered output) with the last revision at an interval, report drift, and
    /// with --fix repair it.
    #[command(after_help = help!("Examples:\n  aptc watch examples/quickstart                 report policy changes and drift\n  \
aptc watch --fix --yes --interval 10 .          apply changes and repair drift as new revisions\n\n\
Policy files are looked at every second; the target is compared with the last revision every\n\
--interval seconds (default 30). A policy with errors is reported and watched until it is fixed.\n\
SIGINT or SIGTERM stops it cleanly: what runs finishes and is recorded.",
"130 stopped by SIGINT or SIGTERM; 0 not started (--fix declined); 2 usage or I/O error\n\
(a path that does not exist, no --yes for --fix without a terminal)."))]
    Watch(watch::WatchArgs),
    /// Push the policy to the control cluster: one PolicyBundle per .apt namespace (its files and
    /// the files they name), applied where `aptc controller` runs.
    #[command(after_help = help!("Examples:\n  aptc push                                   the policy of the current directory\n  \
aptc push examples/quickstart --context control\n\n\
A bundle is refused by the cluster when the requester may not make its changes (the policy's own\n\
rule of who may change what, docs/language.md §11); the others are pushed all the same.",
"0 every bundle pushed (or unchanged); 1 the policy has errors (nothing pushed), a bundle was\n\
refused, or the CRDs are not installed; 2 usage or I/O error (no kubeconfig, the cluster unreachable, a bundle too large)."))]
    Push(push::PushArgs),
    /// Run aptc in the cluster (the controller), or print what installs it.
    #[command(after_help = help!("Examples:\n  aptc controller manifests | kubectl apply -f -\n  \
aptc controller manifests --namespace platform --image registry.example.com/aptc:0.1.0\n  \
aptc controller run --kubeconfig control.yaml --work-dir /var/lib/aptc",
"manifests: 0 printed, 2 usage error; run: 130 stopped by SIGTERM or SIGINT, 2 it could not start\n\
(no cluster configuration, a port in use, an unreadable certificate)."))]
    Controller(controller::ControllerArgs),
    /// Serve the dashboard: the policy's graph, each claim's decision chain, the instances, the
    /// revisions with their plans and diffs, drift, and rollback when allowed.
    #[command(after_help = help!("Examples:\n  aptc ui examples/twitter-analytics --open\n  \
aptc ui . --as alice --allow-rollback --target render\n\n\
Listens on 127.0.0.1:7878 by default; any other address requires the token it prints.",
"none while it serves (until SIGINT or SIGTERM ends it); 2 usage or I/O error (the address is taken, a path\n\
does not exist)."))]
    Ui(ui::UiArgs),
    /// Print a shell completion script for aptc's commands and flags.
    #[command(after_help = help!("Examples:\n  aptc completions bash > ~/.local/share/bash-completion/completions/aptc\n  \
aptc completions zsh > ~/.zfunc/_aptc            (with fpath+=~/.zfunc before compinit)\n  \
aptc completions fish > ~/.config/fish/completions/aptc.fish\n  \
aptc completions powershell >> $PROFILE",
"0 printed; 2 usage error."))]
    Completions(completions::CompletionsArgs),
    /// Write manual pages: aptc.1 and one aptc-COMMAND.1 per command.
    #[command(after_help = help!("Examples:\n  aptc man --out target/man && man -l target/man/aptc-check.1",
"0 written; 2 usage or I/O error."))]
    Man(man::ManArgs),
    /// Helm's post-renderer: stamps aptc's labels on the manifests from stdin (run by Helm).
    #[command(name = "__post-render", hide = true)]
    PostRender(post_render::PostRenderArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    fn enabled(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let color = cli.color.enabled();
    match cli.command {
        Command::Check(args) => check::run(args, color),
        Command::Fmt(args) => fmt::run(args, color),
        Command::Lsp(args) => lsp::run(args),
        Command::Build(args) => build::run(args, color),
        Command::Plan(args) => plan::run(args, color),
        Command::Explain(args) => explain::run(args, color),
        Command::Diff(args) => diff::run(args, color),
        Command::Graph(args) => graph::run(args, color),
        Command::Test(args) => test::run(args, color),
        Command::Verify(args) => verify::run(args, color),
        Command::Deploy(args) => deploy::run(args, color),
        Command::History(args) => history::run(args),
        Command::Store(args) => store::run(args),
        Command::Rollback(args) => deploy::rollback(args),
        Command::Watch(args) => watch::run(args, color),
        Command::Push(args) => push::run(args),
        Command::Controller(args) => controller::run(args),
        Command::Ui(args) => ui::run(args),
        Command::Completions(args) => completions::run(args),
        Command::Man(args) => man::run(args),
        Command::PostRender(args) => post_render::run(args),
    }
}

/// Logs go to stderr, filtered by `APTC_LOG` (default: warnings only, none from the Kubernetes
/// client).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("APTC_LOG")
        // The Kubernetes client logs each failed request as an error; aptc reports those itself.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off"));
    // Colour only for a person at a terminal: a log written to a file or a pipe stays plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}

use aptc_compiler::host::paths_or_cwd;

#[cfg(test)]
mod tests {
    use super::error_message;
    use aptc_runtime::driver::DriverError;
    use aptc_runtime::helm::HelmError;

    #[test]
    fn a_cause_the_message_already_says_is_not_said_again() {
        let missing = HelmError::NotFound { place: "at /nowhere/helm (given by --helm)".to_string() };
        let error = anyhow::Error::new(DriverError::NeedsHelm(missing.clone())).context("deploying revision 1");
        let message = error_message(&error);
        assert_eq!(message, format!("deploying revision 1: chart instances need helm: {missing}"));
        assert_eq!(message.matches("helm was not found").count(), 1, "{message}");
        // What anyhow's `{:#}` printed: the source twice.
        assert_eq!(format!("{error:#}").matches("helm was not found").count(), 2);
    }

    #[test]
    fn causes_that_say_something_new_are_joined_as_anyhow_joins_them() {
        let error = anyhow::anyhow!("the file is not valid UTF-8").context("reading policy.apt").context("loading");
        assert_eq!(error_message(&error), "loading: reading policy.apt: the file is not valid UTF-8");
        assert_eq!(error_message(&error), format!("{error:#}"));
    }
}
