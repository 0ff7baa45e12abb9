//! `aptc __post-render` (hidden): Helm's post-renderer for aptc's releases. Helm runs it with the
//! rendered manifests on standard input; it writes them back with every object stamped
//! (aptc_runtime::release::post_render). Nobody runs it by hand.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use aptc_runtime::manifest::Stamp;
use aptc_runtime::release::post_render;
use clap::Args;

#[derive(Debug, Args)]
pub struct PostRenderArgs {
    /// The instance id (label aptc.dev/instance).
    #[arg(long)]
    instance: String,
    /// The instance key (annotation aptc.dev/key).
    #[arg(long)]
    key: String,
    /// The aptc revision (label aptc.dev/revision).
    #[arg(long)]
    revision: u64,
    /// The policy namespace that owns the service (label aptc.dev/namespace).
    #[arg(long)]
    namespace: String,
    /// Where to write why stamping failed: Helm 4 drops a post-renderer's standard error.
    #[arg(long)]
    error_file: Option<PathBuf>,
}

pub fn run(args: PostRenderArgs) -> anyhow::Result<ExitCode> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("reading the manifests from standard input")?;
    let stamp = Stamp {
        instance_id: args.instance,
        instance_key: args.key,
        revision: args.revision,
        namespace: args.namespace,
    };
    match post_render(&input, &stamp) {
        Ok(output) => {
            std::io::stdout().write_all(output.as_bytes()).context("writing the manifests")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("error: {error}");
            if let Some(path) = &args.error_file {
                std::fs::write(path, error.to_string()).with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
