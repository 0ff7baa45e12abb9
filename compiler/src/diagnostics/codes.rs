//! The registry of diagnostic codes. Codes are stable: a code, once shipped, keeps its
//! meaning forever, so CI configurations and suppressions can rely on it.
//!
//! APT00xx: lexical and syntax errors. APT01xx: structure of a single declaration.

use serde::{Serialize, Serializer};

use super::Severity;

/// A stable diagnostic code with its default severity and a one-line title.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Code {
    code: &'static str,
    severity: Severity,
    title: &'static str,
}

impl Code {
    /// The code, like `APT0001`.
    pub fn as_str(self) -> &'static str {
        self.code
    }

    /// The severity diagnostics with this code have.
    pub fn severity(self) -> Severity {
        self.severity
    }

    /// A short title for the code (used as the SARIF rule name).
    pub fn title(self) -> &'static str {
        self.title
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

macro_rules! codes {
    ($($name:ident = $code:literal, $severity:ident, $title:literal;)*) => {
        $(
            #[doc = $title]
            pub const $name: Code = Code { code: $code, severity: Severity::$severity, title: $title };
        )*
        /// Every code, in order.
        pub const ALL: &[Code] = &[$($name,)*];
    };
}

codes! {
    INVALID_CHARACTER = "APT0001", Error, "invalid character";
    UNTERMINATED_STRING = "APT0002", Error, "unterminated string";
    UNTERMINATED_COMMENT = "APT0003", Error, "unterminated block comment";
    UNEXPECTED_TOKEN = "APT0004", Error, "unexpected token";
    UNCLOSED_DELIMITER = "APT0005", Error, "unclosed delimiter";
    INTEGER_OUT_OF_RANGE = "APT0006", Error, "integer out of range";
    INVALID_ESCAPE = "APT0007", Error, "invalid escape sequence";
    BAD_INTERPOLATION = "APT0008", Error, "malformed string interpolation";
    CHAINED_COMPARISON = "APT0009", Error, "chained comparison";
    FILE_TOO_LARGE = "APT0010", Error, "file too large";
    MISSING_NAMESPACE = "APT0101", Error, "file does not start with a namespace declaration";
    DUPLICATE_NAMESPACE_DECL = "APT0102", Error, "more than one namespace declaration in a file";
    MISSING_STATEMENT = "APT0103", Error, "required statement missing";
    DUPLICATE_STATEMENT = "APT0104", Error, "statement given twice";
    CONFLICTING_STATEMENTS = "APT0105", Error, "statements that exclude each other";
    MISPLACED_STATEMENT = "APT0106", Error, "statement not allowed here";
    UNKNOWN_ROLE = "APT0107", Error, "unknown role";
    DUPLICATE_KEY = "APT0108", Error, "duplicate map key";
    UNPINNED_CHART = "APT0150", Warning, "chart version not pinned";
    EMPTY_BLOCK = "APT0151", Warning, "declaration has no effect";
}

/// Looks a code up by its text (`APT0004`).
pub fn lookup(code: &str) -> Option<Code> {
    ALL.iter().copied().find(|c| c.code.eq_ignore_ascii_case(code))
}
