//! Front-end benchmarks: lexing, lexing + parsing, and a cold `check` of a whole synthetic workspace.
//!
//! `cargo bench --bench frontend`. Inputs come from the synthetic generator in `synth.rs`, so sizes are
//! in lines of realistic policy; throughput is reported in bytes per second.

mod synth;

use aptc_compiler::source::{FileId, SourceMap};
use aptc_compiler::syntax;
use divan::counter::BytesCount;
use divan::{Bencher, black_box};

fn main() {
    divan::main();
}

const SIZES: [usize; 2] = [10_000, 100_000];

fn workspace(lines: usize) -> Vec<synth::SynthFile> {
    synth::generate(&synth::SynthConfig::for_lines(lines, 7))
}

#[divan::bench(args = SIZES, sample_count = 20)]
fn lex(bencher: Bencher, lines: usize) {
    let files = workspace(lines);
    bencher.counter(BytesCount::new(synth::total_bytes(&files))).bench(|| {
        for file in &files {
            black_box(syntax::lexer::lex(black_box(&file.text)));
        }
    });
}

#[divan::bench(args = SIZES, sample_count = 20)]
fn lex_and_parse(bencher: Bencher, lines: usize) {
    let files = workspace(lines);
    bencher.counter(BytesCount::new(synth::total_bytes(&files))).bench(|| {
        for (i, file) in files.iter().enumerate() {
            black_box(syntax::parse(FileId(i as u32), black_box(&file.text)));
        }
    });
}

/// What `aptc check` does after reading the files: parse, validate and collect diagnostics, cold.
#[divan::bench(args = SIZES, sample_count = 10)]
fn check_cold(bencher: Bencher, lines: usize) {
    let files = workspace(lines);
    bencher
        .counter(BytesCount::new(synth::total_bytes(&files)))
        .with_inputs(|| {
            let mut sources = SourceMap::new();
            for file in &files {
                sources.add(&file.path, file.text.as_str());
            }
            sources
        })
        .bench_values(|mut sources| black_box(aptc_compiler::host::check(&mut sources)));
}

/// Openers left unclosed, the input whose recovery used to take exponential time (24 `{`
/// after `label x: any =` took 34 s). Each must stay linear: 10,000 levels in well under
/// 100 ms (docs/performance.md). The opener is named by its first character; `$` is `"${`.
#[divan::bench(consts = ['{', '(', '[', '$'], args = [1, 10, 100, 10_000], sample_count = 10)]
fn unclosed_delimiters<const OPENER: char>(bencher: Bencher, levels: usize) {
    let opener = if OPENER == '$' { "\"${".to_string() } else { OPENER.to_string() };
    let text = format!("namespace w\nlabel x: any = {}\n", opener.repeat(levels));
    bencher.bench(|| syntax::parse(FileId(0), black_box(&text)));
}
