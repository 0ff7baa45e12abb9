//! The standard library is declared once (stdlib/prelude.apt, `namespace std`) and implemented
//! once (`aptc_core::eval`): every declared function is implemented, and every implemented one
//! declared.

mod common;

use std::collections::BTreeSet;

use aptc_compiler::source::FileId;
use aptc_compiler::syntax::{ast::ItemKind, parse};
use aptc_core::eval::{EvalError, FUNCTIONS, call};

#[test]
fn the_prelude_declares_exactly_what_the_evaluator_implements() {
    let text = std::fs::read_to_string(common::root().join("stdlib/prelude.apt")).unwrap();
    let parsed = parse(FileId(0), &text);
    assert!(parsed.diagnostics.is_empty(), "{:#?}", parsed.diagnostics);
    let declared: BTreeSet<&str> = parsed
        .file
        .items
        .iter()
        .filter_map(|item| match &item.kind {
            ItemKind::Function(function) => Some(function.name.text.as_str()),
            _ => None,
        })
        .collect();
    let implemented: BTreeSet<&str> = FUNCTIONS.iter().copied().collect();
    assert_eq!(declared, implemented, "stdlib/prelude.apt and eval::FUNCTIONS differ");
    let unknown = |name: &str| matches!(call(name, &[]), Err(EvalError::Function(message)) if message.starts_with("unknown function"));
    // `default` is the evaluator's own (it evaluates its fallback only when needed).
    for name in FUNCTIONS.iter().filter(|&&name| name != "default") {
        assert!(!unknown(name), "eval::call does not implement `{name}`");
    }
    assert!(unknown("no_such_function"));
}
