//! Deep and unclosed nesting: the front end stays linear and never overflows the stack.
//!
//! Every test here runs on a spawned thread with the 2 MiB stack test threads have, under a
//! generous deadline that only a blow-up would miss (see `common::within`).

mod common;

use std::time::Duration;

use aptc_compiler::host::check;
use aptc_compiler::source::{FileId, SourceMap};
use aptc_compiler::syntax::ast::ItemKind;
use aptc_compiler::syntax::format::format_source;
use aptc_compiler::syntax::parse;
use proptest::prelude::*;

/// Far above what any of these takes even in a debug build on a busy machine.
const DEADLINE: Duration = Duration::from_secs(60);

/// The bound of docs/language.md §13.1.
const MAX_DEPTH: usize = 256;

/// One way of nesting an expression: what goes before and after the inner expression.
struct Construct {
    name: &'static str,
    open: &'static str,
    close: &'static str,
}

const CONSTRUCTS: &[Construct] = &[
    Construct { name: "not", open: "not ", close: "" },
    Construct { name: "minus", open: "-", close: "" },
    Construct { name: "and-chain", open: "true and ", close: "" },
    Construct { name: "list", open: "[", close: "]" },
    Construct { name: "map", open: "{a=", close: "}" },
    Construct { name: "paren", open: "(", close: ")" },
    Construct { name: "interpolation", open: "\"${", close: "}\"" },
];

/// A label whose default nests `construct` `depth` times around `1`, closed or not.
fn nested(construct: &Construct, depth: usize, closed: bool) -> String {
    let close = if closed { construct.close.repeat(depth) } else { String::new() };
    format!("namespace w\nlabel x: any = {}1{close}\n", construct.open.repeat(depth))
}

fn codes(text: &str) -> Vec<&'static str> {
    parse(FileId(0), text).diagnostics.iter().map(|d| d.code.as_str()).collect()
}

fn check_text(text: &str) -> Vec<&'static str> {
    let mut sources = SourceMap::new();
    sources.add("deep.apt", text.to_string());
    check(&mut sources).diagnostics.iter().map(|d| d.code.as_str()).collect()
}

/// A million levels of every construct: refused with APT0011 by the parser, the checker and
/// the formatter alike, without overflowing a test thread's stack. Left open, they are
/// parsed in linear time. (Constructs run side by side: lexing a million tokens takes a
/// second in a debug build.)
#[test]
fn a_million_levels_are_refused_not_a_crash() {
    let runs: Vec<_> = CONSTRUCTS
        .iter()
        .map(|construct| {
            std::thread::spawn(move || {
                common::within(DEADLINE, construct.name, move || {
                    let what = construct.name;
                    let closed = nested(construct, 1_000_000, true);
                    assert!(check_text(&closed).contains(&"APT0011"), "{what}");
                    assert!(format_source(FileId(0), &closed).is_err(), "{what}");
                    let open = nested(construct, 1_000_000, false);
                    assert!(codes(&open).contains(&"APT0011"), "{what} left open: {:?}", codes(&open));
                });
            })
        })
        .collect();
    for run in runs {
        if let Err(panic) = run.join() {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Just inside the bound, every tool walks the whole tree: the parser accepts it and the
/// checker and formatter recurse through it on a 2 MiB stack.
#[test]
fn the_deepest_accepted_tree_fits_in_a_test_thread() {
    for construct in CONSTRUCTS {
        let text = nested(construct, MAX_DEPTH - 8, true);
        let what = construct.name;
        common::within(DEADLINE, what, move || {
            assert_eq!(codes(&text), Vec::<&str>::new(), "{what}");
            assert!(!check_text(&text).contains(&"APT0011"), "{what}");
            let formatted = format_source(FileId(0), &text).unwrap_or_else(|e| panic!("{what}: {e:?}"));
            assert_eq!(format_source(FileId(0), &formatted).as_ref(), Ok(&formatted), "{what}");
        });
    }
}

/// The bound is where the documentation says: 256 `not`s are accepted, 257 are not.
#[test]
fn the_bound_is_exact() {
    let rule = |nots: usize| format!("namespace w\nrule r when {}true {{\n    reject \"x\"\n}}\n", "not ".repeat(nots));
    assert!(!codes(&rule(MAX_DEPTH)).contains(&"APT0011"));
    assert_eq!(codes(&rule(MAX_DEPTH + 1)), ["APT0011"]);
}

/// Too deep in one place costs that place only: the next declaration is still read.
#[test]
fn what_follows_a_deep_expression_is_still_parsed() {
    let text = format!("{}label y: int = \"s\"\n", nested(&CONSTRUCTS[3], 1000, true));
    let parsed = parse(FileId(0), &text);
    assert!(matches!(&parsed.file.items.last().unwrap().kind, ItemKind::Label(label) if label.name.text == "y"));
    assert_eq!(check_text(&text).iter().filter(|c| **c == "APT0011").count(), 1);
    assert!(check_text(&text).contains(&"APT0302"), "the type error after it is found");
}

/// Unclosed brackets of every kind, in every position, interleaved with other tokens.
fn unclosed() -> impl Strategy<Value = String> {
    let opener = prop::sample::select(vec!["{", "(", "[", "\"${", "{a=", "not ", "-", "x and ", "f(", "[1, "]);
    let head = prop::sample::select(vec![
        "label x: any = ",
        "rule r when ",
        "service s {\n component c chart \"c\" {\n values ",
        "test t {\n expect instance ",
        "",
    ]);
    let tail = prop::sample::select(vec!["", "}", ")", "]", "\n", "\nlabel y: int = 1\n", "\"", "}\""]);
    (head, prop::collection::vec((opener, 1usize..400), 1..6), tail).prop_map(|(head, runs, tail)| {
        let body: String = runs.iter().map(|(open, n)| open.repeat(*n)).collect();
        format!("namespace w\n{head}{body}{tail}")
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, max_shrink_iters: 64, ..ProptestConfig::default() })]

    /// Recovery from unclosed brackets used to take time exponential in their number: 24 of
    /// them took half a minute. Now such inputs finish; the deadline only catches a hang.
    #[test]
    fn unclosed_delimiters_finish(text in unclosed()) {
        let what = common::excerpt(&text);
        common::within(DEADLINE, &what, move || common::exercise(&text));
    }
}
