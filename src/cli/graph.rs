//! `aptc graph`: claims and instances as a Graphviz graph.

use aptc_compiler::host::paths_or_cwd;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context, bail};
use aptc_core::graph::to_dot;
use aptc_core::resolve::{Chains, DeployedNames, Options, resolve_taking};
use clap::Args;

use super::policy;

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Policy files or directories, or one `.aptir` file. Default: the current directory.
    paths: Vec<PathBuf>,
    /// Also render SVG into this file with Graphviz `dot` (which must be on PATH).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

pub fn run(args: GraphArgs, color: bool) -> anyhow::Result<ExitCode> {
    let program = policy::load(&paths_or_cwd(&args.paths)?, color)?;
    // The graph shows no decision chain: none is kept.
    let state = resolve_taking(program, &Options { deployed: &DeployedNames::new(), chains: Chains::None });
    let dot = to_dot(&state);
    let Some(svg) = args.svg else {
        print!("{dot}");
        return Ok(ExitCode::SUCCESS);
    };
    let mut child = match Command::new("dot").arg("-Tsvg").arg("-o").arg(&svg).stdin(Stdio::piped()).spawn() {
        Ok(child) => child,
        Err(_) => {
            bail!("Graphviz `dot` is not on PATH: install it (`apt-get install graphviz`), or omit --svg to print DOT")
        }
    };
    std::io::Write::write_all(child.stdin.as_mut().expect("piped"), dot.as_bytes())?;
    if !child.wait().context("running dot")?.success() {
        bail!("dot failed to render {}", svg.display());
    }
    println!("wrote {}", svg.display());
    Ok(ExitCode::SUCCESS)
}
