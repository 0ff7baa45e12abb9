//! Words in messages people read.

/// `1 claim`, `2 claims`, `0 claims`: a count with its noun in the right number. Every noun aptc
/// counts takes an `s` in the plural.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(count(0, "claim"), "0 claims");
        assert_eq!(count(1, "cluster namespace"), "1 cluster namespace");
        assert_eq!(count(2, "instance"), "2 instances");
    }
}
