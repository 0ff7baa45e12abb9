//! `cargo run --release --example synth -- --lines 100000 [--claims N] [--users N] [--diamond DEPTH | --engine] --out /tmp/synth`: writes a synthetic policy
//! workspace to a directory, for benchmarks and trying the CLI on big inputs. `--lines 12682 --users 500`
//! is the shape of `benches/resolve.rs` (34 namespaces); `--diamond DEPTH` writes the diamond chain
//! of issue #11 instead (with `--claims` claims, default 1); `--engine` the shape of Aptomi's engine
//! benchmark (issue #11: `--claims` claims, default 1,000; `--users` users, default 200).

mod synth;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut lines = 10_000;
    let mut out = PathBuf::from("target/synth");
    let mut seed = 1;
    let mut claims = None;
    let mut users = None;
    let mut diamond = None;
    let mut engine = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--engine" {
            engine = true;
            continue;
        }
        let value = args.next();
        let parsed = match (arg.as_str(), value) {
            ("--lines", Some(v)) => v.parse().map(|v| lines = v).is_ok(),
            ("--seed", Some(v)) => v.parse().map(|v| seed = v).is_ok(),
            ("--claims", Some(v)) => v.parse().map(|v| claims = Some(v)).is_ok(),
            ("--users", Some(v)) => v.parse().map(|v| users = Some(v)).is_ok(),
            ("--diamond", Some(v)) => v.parse().map(|v| diamond = Some(v)).is_ok(),
            ("--out", Some(v)) => {
                out = PathBuf::from(v);
                true
            }
            _ => false,
        };
        if !parsed {
            eprintln!(
                "usage: synth [--lines N] [--claims N] [--users N] [--diamond DEPTH | --engine] [--seed N] [--out DIR]"
            );
            return ExitCode::from(2);
        }
    }
    let files = match diamond {
        Some(depth) => synth::diamond(depth, claims.unwrap_or(1)),
        None if engine => synth::engine(claims.unwrap_or(1_000), users.unwrap_or(200), seed),
        None => {
            let base = synth::SynthConfig::for_lines(lines, seed);
            let config = synth::SynthConfig { total_claims: claims, users: users.unwrap_or(base.users), ..base };
            synth::generate(&config)
        }
    };
    for file in &files {
        let path = out.join(&file.path);
        let written =
            path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| std::fs::write(&path, &file.text));
        if let Err(error) = written {
            eprintln!("error: writing {}: {error}", path.display());
            return ExitCode::FAILURE;
        }
    }
    let total_lines: usize = files.iter().map(|f| f.text.lines().count()).sum();
    println!(
        "wrote {} files, {total_lines} lines, {} bytes to {}",
        files.len(),
        synth::total_bytes(&files),
        out.display()
    );
    ExitCode::SUCCESS
}
