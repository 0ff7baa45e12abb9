//! `aptc fmt`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use aptc_compiler::diagnostics::render;
use aptc_compiler::syntax::format::format_source;
use aptc_compiler::workspace;
use clap::Args;

use super::EXIT_FINDINGS;
use aptc_compiler::host::paths_or_cwd;

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Files or directories (searched recursively for *.apt). Default: the current directory.
    paths: Vec<PathBuf>,
    /// Change nothing; list files that are not formatted and exit 1 if there are any.
    #[arg(long)]
    check: bool,
}

pub fn run(args: FmtArgs, color: bool) -> anyhow::Result<ExitCode> {
    let files = workspace::find_apt_files(&paths_or_cwd(&args.paths)?)?;
    let sources = workspace::load(&files)?;
    let (mut changed, mut broken) = (0usize, 0usize);
    for (id, file) in sources.iter() {
        match format_source(id, &file.text) {
            Ok(formatted) if formatted == *file.text => {}
            Ok(formatted) => {
                changed += 1;
                if args.check {
                    println!("would reformat {}", file.path.display());
                } else {
                    std::fs::write(&file.path, formatted)
                        .with_context(|| format!("writing {}", file.path.display()))?;
                    println!("formatted {}", file.path.display());
                }
            }
            Err(diagnostics) => {
                broken += 1;
                print!("{}", render::render(&sources, &diagnostics, color));
                eprintln!("{}: not formatted: it has syntax errors", file.path.display());
            }
        }
    }
    let total = sources.len();
    let verb = if args.check { "would reformat" } else { "reformatted" };
    println!(
        "{total} file{} checked, {changed} {verb}, {broken} with syntax errors",
        if total == 1 { "" } else { "s" }
    );
    let failed = broken > 0 || (args.check && changed > 0);
    Ok(if failed { ExitCode::from(EXIT_FINDINGS) } else { ExitCode::SUCCESS })
}
