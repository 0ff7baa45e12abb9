//! `aptc build`: lower a policy to the resolution IR.

use aptc_compiler::host::paths_or_cwd;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::policy;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Policy files or directories. Default: the current directory.
    paths: Vec<PathBuf>,
    /// Where to write the IR.
    #[arg(short, long, default_value = "policy.aptir")]
    output: PathBuf,
}

pub fn run(args: BuildArgs, color: bool) -> anyhow::Result<ExitCode> {
    let program = policy::load(&paths_or_cwd(&args.paths)?, color)?;
    std::fs::write(&args.output, program.to_json()).with_context(|| format!("writing {}", args.output.display()))?;
    println!(
        "wrote {} (IR version {}): {} services, {} contracts, {} claims",
        args.output.display(),
        program.version,
        program.services.len(),
        program.contracts.len(),
        program.claims.len()
    );
    Ok(ExitCode::SUCCESS)
}
