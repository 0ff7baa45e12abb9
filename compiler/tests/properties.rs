//! Properties over generated input: nothing panics, and formatting is idempotent and
//! keeps meaning. Two generators: arbitrary text, and "token soup" drawn from the
//! language's own vocabulary, which reaches far deeper into the parser.

mod common;

use aptc_compiler::syntax::lexer::Keyword;
use common::exercise;
use proptest::prelude::*;

const PUNCTUATION: &[&str] =
    &["{", "}", "(", ")", "[", "]", ",", ";", ":", ".", "=", "==", "!=", "<", "<=", ">", ">=", "|", "-", "*", "->"];
const LITERALS: &[&str] = &[
    "x",
    "web",
    "labels",
    "user",
    "kafka",
    "env",
    "0",
    "42",
    "99999999999999999999",
    "\"s\"",
    "\"${user.name}\"",
    "\"${\"",
    "\"a\\q\"",
    "\"unterminated",
    "// c\n",
    "/// d\n",
    "/* b */",
    "/* open",
    "\n",
    "§",
    "&&",
    "é",
];

fn vocabulary() -> Vec<String> {
    let mut words: Vec<String> = Keyword::ALL.iter().map(|k| k.as_str().to_string()).collect();
    words.extend(PUNCTUATION.iter().chain(LITERALS).map(|s| s.to_string()));
    words
}

fn token_soup() -> impl Strategy<Value = String> {
    let words = vocabulary();
    prop::collection::vec(prop::sample::select(words), 0..80).prop_map(|words| words.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        exercise(&text);
    }

    #[test]
    fn token_soup_never_panics(text in token_soup()) {
        exercise(&text);
    }

    /// Mutating a valid file (deleting, duplicating or swapping a span) is what editing
    /// looks like; the checker must survive every intermediate state.
    #[test]
    fn edited_examples_never_panic(case in 0usize..64, at in 0usize..4096, len in 0usize..64, insert in token_soup()) {
        let files = common::cases("parse");
        let text = std::fs::read_to_string(&files[case % files.len()]).unwrap();
        let mut start = at.min(text.len());
        while !text.is_char_boundary(start) { start -= 1; }
        let mut end = (start + len).min(text.len());
        while !text.is_char_boundary(end) { end -= 1; }
        let edited = format!("{}{}{}", &text[..start], insert, &text[end..]);
        exercise(&edited);
    }
}
