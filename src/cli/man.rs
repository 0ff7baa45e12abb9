//! `aptc man`: manual pages (roff) generated from the clap definition, `aptc.1` and one
//! `aptc-COMMAND.1` per subcommand, so packagers and CI get pages that say what `--help` says.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory};

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The directory to write the pages into (created when missing).
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

pub fn run(args: ManArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    clap_mangen::generate_to(super::Cli::command(), &args.out)
        .with_context(|| format!("writing manual pages into {}", args.out.display()))?;
    println!("manual pages written to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
