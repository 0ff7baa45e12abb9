//! The benchmark generator must produce what it claims: a clean, canonically formatted policy of about
//! the requested size, the same bytes for the same seed.

#[path = "../benches/synth.rs"]
mod synth;

use aptc_compiler::source::{FileId, SourceMap};
use aptc_compiler::syntax::format::format_source;

#[test]
fn generated_policy_is_clean_formatted_deterministic_and_sized() {
    let config = synth::SynthConfig::for_lines(5_000, 3);
    let files = synth::generate(&config);
    let mut sources = SourceMap::new();
    for file in &files {
        sources.add(&file.path, file.text.as_str());
        assert_eq!(
            format_source(FileId(0), &file.text).as_deref(),
            Ok(file.text.as_str()),
            "{} is not canonical",
            file.path
        );
    }
    let result = aptc_compiler::host::check(&mut sources);
    assert!(result.diagnostics.is_empty(), "{:#?}", result.diagnostics);

    let lines: usize = files.iter().map(|f| f.text.lines().count()).sum();
    assert_eq!(synth::total_bytes(&files), files.iter().map(|f| f.text.len()).sum::<usize>());
    assert!((4_500..=5_500).contains(&lines), "asked for ~5000 lines, got {lines}");

    let again = synth::generate(&config);
    assert!(files.iter().zip(&again).all(|(a, b)| a.path == b.path && a.text == b.text), "not deterministic");
}
