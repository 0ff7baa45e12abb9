//! `aptc completions SHELL`: the shell's completion script for aptc's subcommands and flags,
//! generated from the same clap definition that parses them, so they cannot drift apart.

use std::process::ExitCode;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    shell: Shell,
}

pub fn run(args: CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut command = super::Cli::command();
    clap_complete::generate(args.shell, &mut command, "aptc", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
