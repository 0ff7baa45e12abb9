//! Words in messages people read.

/// `1 claim`, `2 claims`, `0 claims`: a count with its noun in the right number. Every noun aptc
/// counts takes an `s` in the plural.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// `text` as a terminal shows it safely: the characters a consumer can put in a label value
/// that would act on the terminal or hide what follows (C0 controls but line feed and tab, DEL,
/// C1 controls, the line and paragraph separators, bidirectional overrides and isolates, the
/// byte-order mark) are written as `\u{…}` escapes. Every line of text output that can hold
/// claim data goes through it (JSON output escapes by its own rules).
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let acts = |c: char| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{feff}')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c)
    };
    if !text.chars().any(acts) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if acts(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{count, printable};

    #[test]
    fn what_acts_on_a_terminal_is_escaped_and_the_rest_kept() {
        assert_eq!(printable("plain ✓ ünïcødé\n\tnext"), "plain ✓ ünïcødé\n\tnext");
        assert_eq!(printable("red\u{1b}[31m"), "red\\u{1b}[31m");
        assert_eq!(
            printable("a\rb\u{7f}c\u{85}d\u{2028}e\u{202e}f\u{2066}g"),
            "a\\u{d}b\\u{7f}c\\u{85}d\\u{2028}e\\u{202e}f\\u{2066}g"
        );
    }

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(count(0, "claim"), "0 claims");
        assert_eq!(count(1, "cluster namespace"), "1 cluster namespace");
        assert_eq!(count(2, "instance"), "2 instances");
    }
}
