//! `aptc lsp`: the language server, on standard input and output.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct LspArgs {
    /// Accepted for editors that pass it; standard input and output are the only transport.
    #[arg(long)]
    stdio: bool,
}

pub fn run(_args: LspArgs) -> anyhow::Result<ExitCode> {
    aptc_lsp::run_stdio()?;
    Ok(ExitCode::SUCCESS)
}
