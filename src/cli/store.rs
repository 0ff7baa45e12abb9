//! `aptc store check` and `aptc store repair`: what is damaged in a revision store, and a fresh
//! store holding every revision that can still be read (the damaged file kept beside it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use aptc_runtime::store::{FileStore, Health, KubeHealth, KubeLocation, KubeStore, Location, StoreError};
use clap::{Args, Subcommand};

use super::EXIT_FINDINGS;
use super::deploy::DEFAULT_STATE;

/// The root of the policy at `paths` (the current directory when none are given): the nearest
/// directory holding `aptc.toml`, else the directory given (docs/language.md §3.1). Its deploys
/// keep their state in `.aptc/state.db` there, wherever aptc runs.
pub fn policy_root(paths: &[PathBuf]) -> PathBuf {
    let cwd = [PathBuf::from(".")];
    aptc_compiler::workspace::policy_root(if paths.is_empty() { &cwd } else { paths })
}

/// The store: `explicit` (`--state`, `APTC_STATE`) as given, else the file under `root`.
pub fn state_location(explicit: Option<&Location>, root: &Path) -> Location {
    explicit.cloned().unwrap_or_else(|| Location::File(root.join(DEFAULT_STATE)))
}

/// `--state`: a file's path, or `kube://CONTEXT/NAMESPACE` (`runtime::store::Location::from_arg`).
pub fn parse_state() -> impl clap::builder::TypedValueParser<Value = Location> {
    use clap::builder::TypedValueParser;
    clap::builder::OsStringValueParser::new().try_map(|text| Location::from_arg(Path::new(&text)))
}

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
    /// The revision store (default: .aptc/state.db under the policy root of the current
    /// directory: the nearest directory holding aptc.toml, else the current directory).
    #[arg(long, value_name = "PATH", env = "APTC_STATE", global = true)]
    state: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Verify the store (every page's checksum, every record decoded; for kube://, every object's
    /// records, missing revisions and a journal left) and say what is damaged and what can still
    /// be read. Exit 1 when it is damaged.
    Check,
    /// Copy every readable revision into a fresh store that takes the damaged one's place; the
    /// damaged file is kept beside it as STATE.damaged-<time>. Nothing changes when it is not
    /// damaged. For kube://: objects that cannot be read are moved aside (NAME-damaged-<time>) and
    /// an interrupted deploy's journal is recorded as its revision.
    Repair,
}

pub fn run(args: StoreArgs) -> anyhow::Result<ExitCode> {
    let path = &args.state.unwrap_or_else(|| policy_root(&[]).join(DEFAULT_STATE));
    if let Location::Kube(kube) = Location::from_arg(path)? {
        return kube_store(&args.command, &Location::Kube(kube.clone()), &kube);
    }
    match args.command {
        StoreCommand::Check => {
            let health = match FileStore::check(path) {
                Ok(health) => health,
                Err(error @ (StoreError::Empty { .. } | StoreError::NotAStore { .. })) => {
                    println!("{error}");
                    return Ok(ExitCode::from(EXIT_FINDINGS));
                }
                Err(error) => return Err(error.into()),
            };
            if !health.is_damaged() {
                let last = health.readable.last().map_or("none yet".to_string(), |n| format!("the last is {n}"));
                println!("{}: not damaged; {} revisions ({last})", path.display(), health.readable.len());
                return Ok(ExitCode::SUCCESS);
            }
            println!("{} is damaged:", path.display());
            print!("{}", damage(&health));
            println!("{}", readable(&health));
            println!(
                "to recover: aptc store repair --state {} (copies what can be read into a fresh store; the damaged file \
is kept beside it)",
                path.display()
            );
            Ok(ExitCode::from(EXIT_FINDINGS))
        }
        StoreCommand::Repair => {
            let Some(repaired) = FileStore::repair(path)? else {
                println!("{}: not damaged; nothing to repair", path.display());
                return Ok(ExitCode::SUCCESS);
            };
            println!("repaired {}: the fresh store holds what could be read", path.display());
            println!("{}", readable(&repaired.health));
            println!("lost:");
            print!("{}", damage(&repaired.health));
            println!("the damaged file is kept as {}", repaired.damaged.display());
            println!(
                "the next deploy plans against the last revision kept; deploy with --refresh to compare with what the \
target holds now"
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `check`/`repair` of a Kubernetes store (`kube://CONTEXT/NAMESPACE`): its objects.
fn kube_store(command: &StoreCommand, location: &Location, kube: &KubeLocation) -> anyhow::Result<ExitCode> {
    let lines = |items: &[String]| items.iter().map(|d| format!("  - {d}\n")).collect::<String>();
    let readable = |health: &KubeHealth| {
        let numbers: Vec<String> = health.readable.iter().map(u64::to_string).collect();
        if numbers.is_empty() {
            "readable: no revision".to_string()
        } else {
            format!("readable: revisions {}", numbers.join(", "))
        }
    };
    let unfinished = |health: &KubeHealth| {
        health.unfinished.map(|n| format!("a deploy of revision {n} did not finish: its journal is in the head"))
    };
    match command {
        StoreCommand::Check => {
            let health = KubeStore::check(location, kube)?;
            if !health.is_damaged() {
                let last = health.readable.last().map_or("none yet".to_string(), |n| format!("the last is {n}"));
                println!("{location}: not damaged; {} revisions ({last})", health.readable.len());
                if let Some(line) = unfinished(&health) {
                    println!("{line}; the next deploy records it (or: aptc store repair --state {location})");
                }
                return Ok(ExitCode::SUCCESS);
            }
            println!("{location} is damaged:");
            print!("{}", lines(&health.damage));
            println!("{}", readable(&health));
            if let Some(line) = unfinished(&health) {
                println!("{line}");
            }
            println!(
                "to recover: aptc store repair --state {location} (moves what cannot be read aside, records an \
interrupted deploy's journal)"
            );
            Ok(ExitCode::from(EXIT_FINDINGS))
        }
        StoreCommand::Repair => {
            let (done, after) = KubeStore::repair(location, kube)?;
            if done.is_empty() {
                println!("{location}: nothing to repair");
            } else {
                println!("repaired {location}:");
                print!("{}", lines(&done));
            }
            println!("{}", readable(&after));
            if after.is_damaged() {
                println!("still:");
                print!("{}", lines(&after.damage));
                return Ok(ExitCode::from(EXIT_FINDINGS));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// One line per damaged part.
fn damage(health: &Health) -> String {
    health.damage.iter().map(|d| format!("  - {d}\n")).collect()
}

/// Which revisions (and whether a journal) can be read.
fn readable(health: &Health) -> String {
    let numbers: Vec<String> = health.readable.iter().map(u64::to_string).collect();
    let revisions =
        if numbers.is_empty() { "no revision".to_string() } else { format!("revisions {}", numbers.join(", ")) };
    let journal = if health.journal { "; and the journal of a deploy that has not finished" } else { "" };
    format!("readable: {revisions}{journal}")
}
