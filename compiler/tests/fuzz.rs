//! A fuzzer on the stable toolchain, run as an ordinary test so CI runs it (`fuzz/` needs
//! nightly). It mutates real policies (every `.apt` file of `examples/` and `tests/cases/`):
//! byte edits, spans deleted, duplicated or moved, tokens of the language inserted, and deep
//! nesting and unclosed brackets spliced in. Each input must get through `common::exercise`
//! (check, every output format, formatting) without a panic and within a per-input deadline,
//! which catches exponential blow-ups and runaway recursion as well as crashes.
//!
//! `APTC_FUZZ_CASES=N` runs N inputs instead of the default, which fits in CI's minute.

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use proptest::prelude::*;

/// Per input, wall-clock. Most inputs take milliseconds in a debug build; the slowest honest
/// ones (a hundred diagnostics on one 10 KB line, which the human renderer lays out again for
/// each) take about a second of CPU, several times that on a loaded machine. A timed-out input's
/// thread keeps running, so the bound must be far above any of those: it is a hang detector
/// (24 unclosed braces took 34 s before recovery was linear; the fuzzer nests thousands).
const DEADLINE: Duration = Duration::from_secs(30);

fn corpus() -> &'static [String] {
    static CORPUS: OnceLock<Vec<String>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files =
            aptc_compiler::workspace::find_apt_files(&[root.join("examples"), root.join("tests/cases")]).unwrap();
        files.iter().map(|file| std::fs::read_to_string(file).unwrap()).collect()
    })
}

/// What can be spliced in: the language's tokens, and the shapes that stress the parser.
const INSERTS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    "=",
    "==",
    ".",
    ":",
    ";",
    "-",
    "\"",
    "\"${",
    "}\"",
    "${",
    "\\",
    "/*",
    "*/",
    "//",
    "\n",
    "not ",
    " and ",
    " or ",
    " in ",
    "namespace ",
    "label ",
    "service ",
    "rule ",
    "claim ",
    "test ",
    "assert ",
    "expect ",
    "for users in team ",
    "never shares with others",
    "reaches ",
    "placed on ",
    "that ",
    "when ",
    "labels.",
    "user.",
    "set ",
    "x",
    "1",
    "99999999999999999999",
    "true",
    "§",
];

/// Openers repeated to nest deeply, closed or not.
const NESTERS: &[(&str, &str)] =
    &[("{", "}"), ("(", ")"), ("[", "]"), ("\"${", "}\""), ("{a=", "}"), ("not ", ""), ("-", ""), ("x and ", "")];

#[derive(Clone, Debug)]
enum Mutation {
    /// Replace the byte at a position.
    Byte {
        at: usize,
        byte: u8,
    },
    Delete {
        at: usize,
        len: usize,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    /// Move a span to another position.
    Move {
        at: usize,
        len: usize,
        to: usize,
    },
    Insert {
        at: usize,
        what: usize,
    },
    /// `depth` openers at one position and, when `closed`, as many closers at another.
    Nest {
        at: usize,
        to: usize,
        nester: usize,
        depth: usize,
        closed: bool,
    },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let at = any::<usize>();
    prop_oneof![
        (at, any::<u8>()).prop_map(|(at, byte)| Mutation::Byte { at, byte }),
        (at, 0usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (at, 0usize..256).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (at, 0usize..128, any::<usize>()).prop_map(|(at, len, to)| Mutation::Move { at, len, to }),
        (at, 0..INSERTS.len()).prop_map(|(at, what)| Mutation::Insert { at, what }),
        (at, any::<usize>(), 0..NESTERS.len(), prop_oneof![1usize..40, 200usize..300, 1000usize..5000], any::<bool>())
            .prop_map(|(at, to, nester, depth, closed)| Mutation::Nest { at, to, nester, depth, closed }),
    ]
}

/// Applies `mutation` to the bytes of a file; positions wrap around its length.
fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    let pos = |at: usize, bytes: &Vec<u8>| at % (bytes.len() + 1);
    let span = |at: usize, len: usize, bytes: &Vec<u8>| {
        let start = pos(at, bytes);
        start..(start + len).min(bytes.len())
    };
    match *mutation {
        Mutation::Byte { at, byte } => {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
        }
        Mutation::Delete { at, len } => {
            bytes.drain(span(at, len, bytes));
        }
        Mutation::Duplicate { at, len } => {
            let range = span(at, len, bytes);
            let copy = bytes[range.clone()].to_vec();
            bytes.splice(range.end..range.end, copy);
        }
        Mutation::Move { at, len, to } => {
            let moved: Vec<u8> = bytes.drain(span(at, len, bytes)).collect();
            let to = pos(to, bytes);
            bytes.splice(to..to, moved);
        }
        Mutation::Insert { at, what } => {
            let at = pos(at, bytes);
            bytes.splice(at..at, INSERTS[what].bytes());
        }
        Mutation::Nest { at, to, nester, depth, closed } => {
            let (open, close) = NESTERS[nester];
            let (first, second) = (pos(at, bytes), pos(to, bytes));
            let (first, second) = (first.min(second), first.max(second));
            if closed {
                bytes.splice(second..second, close.repeat(depth).into_bytes());
            }
            bytes.splice(first..first, open.repeat(depth).into_bytes());
        }
    }
}

fn cases() -> u32 {
    std::env::var("APTC_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(1024)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 8, ..ProptestConfig::default() })]

    #[test]
    fn mutated_policies_never_panic_or_hang(
        file in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let corpus = corpus();
        let mut bytes = corpus[file.index(corpus.len())].clone().into_bytes();
        for mutation in &mutations {
            apply(&mut bytes, mutation);
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let what = common::excerpt(&text);
        common::within(DEADLINE, &what, move || common::exercise(&text));
    }
}
