//! Fuzzes the whole front end: lexer, parser, structural checks, formatter.
//! Run: `cargo install cargo-fuzz && cargo +nightly fuzz run parse` (from the repo root),
//! or without nightly: `cargo fuzz run parse -s none`.
#![no_main]

use aptc_compiler::check::check;
use aptc_compiler::source::{FileId, SourceMap};
use aptc_compiler::syntax::format::format_source;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut sources = SourceMap::new();
    sources.add("fuzz.apt", text.to_string());
    let _ = check(&mut sources);
    if let Ok(formatted) = format_source(FileId(0), text) {
        let again = format_source(FileId(0), &formatted).expect("formatted output must parse");
        assert_eq!(again, formatted, "formatting is not idempotent");
    }
});
