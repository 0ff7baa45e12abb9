//! `aptc lsp`: the language server, on standard input and output.

use std::process::ExitCode;

use clap::Args;

#[derive(Debug, Args)]
pub struct LspArgs {
    /// Accepted for editors that pass it; standard input and output are the only transport.
    #[arg(long)]
    stdio: bool,
}

/// Exit code 1 when the client did not send `shutdown` before `exit`, as the protocol asks.
pub fn run(_args: LspArgs) -> anyhow::Result<ExitCode> {
    Ok(match aptc_lsp::run_stdio()? {
        aptc_lsp::Ending::AfterShutdown => ExitCode::SUCCESS,
        aptc_lsp::Ending::WithoutShutdown => ExitCode::FAILURE,
    })
}
