//! The registry of diagnostic codes. Codes are stable: a code, once shipped, keeps its
//! meaning forever, so CI configurations and suppressions can rely on it.
//!
//! APT00xx: lexical and syntax errors. APT01xx: structure of a single declaration.
//! APT02xx: names and imports. APT03xx: types and expressions. APT04xx: graph checks and lints.
//! APT05xx: ownership and access control. APT06xx: assertions (`aptc verify`).

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
    NESTING_TOO_DEEP = "APT0011", Error, "nesting too deep";
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
    UNRESOLVED_NAME = "APT0201", Error, "name does not resolve";
    DUPLICATE_DEFINITION = "APT0202", Error, "duplicate definition";
    AMBIGUOUS_NAME = "APT0203", Error, "ambiguous name";
    IMPORT_CYCLE = "APT0204", Error, "import cycle";
    UNRESOLVED_IMPORT = "APT0205", Error, "import of nothing";
    CONFLICTING_OWNERS = "APT0206", Error, "namespace with two owners";
    UNUSED_IMPORT = "APT0207", Warning, "unused import";
    INVALID_USERS_FILE = "APT0208", Error, "users file cannot be used";
    INVALID_MANIFESTS = "APT0209", Error, "manifest files cannot be used";
    INVALID_LOCAL_CHART = "APT0210", Error, "local chart cannot be used";
    UNDECLARED_LABEL = "APT0301", Error, "undeclared label";
    TYPE_MISMATCH = "APT0302", Error, "type mismatch";
    NOT_AN_ENUM_VALUE = "APT0303", Error, "string outside an enum";
    CONDITION_NOT_BOOL = "APT0304", Error, "condition is not a bool";
    UNKNOWN_NAME = "APT0305", Error, "unknown name in an expression";
    NOT_IN_SCOPE_HERE = "APT0306", Error, "name not available here";
    BAD_CALL = "APT0307", Error, "unknown function or wrong arguments";
    DISCOVERY_NOT_A_DEPENDENCY = "APT0308", Error, "discovery of a component that is not a dependency";
    INVALID_REGEX = "APT0309", Error, "invalid regular expression";
    INTERPOLATION_NOT_ALLOWED = "APT0310", Error, "interpolation where a plain string is required";
    UNKNOWN_TYPE = "APT0311", Error, "unknown type";
    UNKNOWN_DISCOVERY_KEY = "APT0312", Error, "discovery key not published";
    SECRET_NOT_ALLOWED = "APT0313", Error, "secret outside a component's values";
    INVALID_MANIFEST = "APT0314", Error, "manifest document is not a Kubernetes object";
    INTERPOLATION_OUTSIDE_VALUE = "APT0315", Error, "manifest interpolation outside a key or value";
    DEPENDENCY_CYCLE = "APT0401", Error, "component dependency cycle";
    CONTRACT_CYCLE = "APT0402", Error, "contract cycle";
    UNREACHABLE_CONTEXT = "APT0403", Warning, "context can never be chosen";
    NON_EXHAUSTIVE_CONTRACT = "APT0404", Warning, "contract does not cover every label value";
    RULE_NEVER_MATCHES = "APT0405", Warning, "rule can never match";
    UNUSED_OBJECT = "APT0406", Warning, "unused object";
    OVERRIDDEN_CLAIM_LABEL = "APT0407", Warning, "claim label overridden by its consumer";
    NEVER_SET_LABEL = "APT0408", Warning, "label read but never set";
    NO_CONSUMER = "APT0409", Warning, "contract no one may consume";
    SHADOWED_RULE = "APT0410", Warning, "rule shadowed by an earlier rejection";
    INVALID_PLACEMENT = "APT0411", Warning, "placement in no valid Kubernetes namespace";
    MAY_NOT_CONSUME = "APT0501", Error, "consumer may not consume";
    MAY_NOT_MANAGE = "APT0502", Error, "user may not manage this object";
    UNKNOWN_ACTING_USER = "APT0503", Error, "unknown acting user";
    ASSERTION_VIOLATED = "APT0601", Error, "assertion violated";
    ASSERTION_UNKNOWN = "APT0602", Warning, "assertion not decided";
}

/// Looks a code up by its text (`APT0004`).
pub fn lookup(code: &str) -> Option<Code> {
    ALL.iter().copied().find(|c| c.code.eq_ignore_ascii_case(code))
}
