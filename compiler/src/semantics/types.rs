//! Types of the expression language and of declared labels.

use std::fmt;
use std::sync::Arc;

use crate::syntax::ast::{SmolStr, TypeExpr, TypeExprKind};

/// A static type. `Unknown` is what an erroneous expression has: it is compatible with
/// everything, so one mistake is reported once, not again by every expression around it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    String,
    Int,
    Bool,
    /// One of these strings, in declaration order.
    Enum(Arc<[SmolStr]>),
    List(Box<Ty>),
    /// A map literal; maps have no type of their own.
    Map,
    Any,
    /// A reference to a secret (`secret_env`, `secret_file`, `secret_k8s`): only a value in a component's
    /// `values` may hold one, so the secret itself is read only when the instance is deployed.
    Secret,
    /// The type of `[]` before its use decides it.
    EmptyList,
    Unknown,
}

impl Ty {
    /// The type a `TypeExpr` denotes, or the name that is no type.
    pub fn from_syntax(ty: &TypeExpr) -> Result<Ty, SmolStr> {
        Ok(match &ty.kind {
            TypeExprKind::Named(name) => match name.text.as_str() {
                "string" => Ty::String,
                "int" => Ty::Int,
                "bool" => Ty::Bool,
                "any" => Ty::Any,
                "secret" => Ty::Secret,
                _ => return Err(name.text.clone()),
            },
            TypeExprKind::Enum(variants) => {
                Ty::Enum(variants.iter().map(|v| SmolStr::new(v.as_plain().unwrap_or_default())).collect())
            }
            TypeExprKind::List(inner) => Ty::List(Box::new(Ty::from_syntax(inner)?)),
        })
    }

    /// Whether this type can be interpolated into a string.
    pub fn is_scalar(&self) -> bool {
        matches!(self, Ty::String | Ty::Int | Ty::Bool | Ty::Enum(_) | Ty::Any | Ty::Unknown)
    }

    /// Whether a value of this type may be used where `target` is expected. Constant strings
    /// against enums are checked by the caller, which knows the literal.
    pub fn fits(&self, target: &Ty) -> bool {
        match (self, target) {
            // A secret is no value an expression can work with, not even as `any`.
            (Ty::Secret, want) => matches!(want, Ty::Secret | Ty::Unknown),
            (Ty::Unknown | Ty::Any, _) | (_, Ty::Unknown | Ty::Any) => true,
            (Ty::Enum(_), Ty::String) => true,
            (Ty::Enum(have), Ty::Enum(want)) => have.iter().all(|v| want.contains(v)),
            (Ty::EmptyList, Ty::List(_)) => true,
            (Ty::List(have), Ty::List(want)) => have.fits(want),
            (have, want) => have == want,
        }
    }

    /// Whether `==` between the two types can be true (an enum and a string compare).
    pub fn comparable(&self, other: &Ty) -> bool {
        self.fits(other) || other.fits(self) || (self.is_stringy() && other.is_stringy())
    }

    /// Whether a value of this type is or holds a secret.
    pub fn holds_secret(&self) -> bool {
        match self {
            Ty::Secret => true,
            Ty::List(inner) => inner.holds_secret(),
            _ => false,
        }
    }

    /// A string or an enum.
    pub fn is_stringy(&self) -> bool {
        matches!(self, Ty::String | Ty::Enum(_))
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::String => f.write_str("string"),
            Ty::Int => f.write_str("int"),
            Ty::Bool => f.write_str("bool"),
            Ty::Enum(variants) => {
                let shown: Vec<String> = variants.iter().map(|v| format!("\"{v}\"")).collect();
                f.write_str(&shown.join(" | "))
            }
            Ty::List(inner) => write!(f, "[{inner}]"),
            Ty::Map => f.write_str("map"),
            Ty::Any => f.write_str("any"),
            Ty::Secret => f.write_str("secret"),
            Ty::EmptyList => f.write_str("[]"),
            Ty::Unknown => f.write_str("{unknown}"),
        }
    }
}

/// A standard-library function's signature.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Signature {
    pub params: Vec<(SmolStr, Ty)>,
    pub ret: Ty,
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<String> = self.params.iter().map(|(name, ty)| format!("{name}: {ty}")).collect();
        write!(f, "({}) -> {}", params.join(", "), self.ret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enum_of(variants: &[&str]) -> Ty {
        Ty::Enum(variants.iter().map(SmolStr::new).collect())
    }

    #[test]
    fn enums_fit_strings_and_wider_enums_only() {
        let small = enum_of(&["dev", "prod"]);
        let big = enum_of(&["dev", "stage", "prod"]);
        assert!(small.fits(&Ty::String));
        assert!(small.fits(&big));
        assert!(!big.fits(&small));
        assert!(!Ty::String.fits(&small), "a non-constant string is not known to be a variant");
        assert!(Ty::EmptyList.fits(&Ty::List(Box::new(Ty::Int))));
        assert!(!Ty::Int.fits(&Ty::String));
        assert!(small.comparable(&Ty::String));
        assert_eq!(big.to_string(), "\"dev\" | \"stage\" | \"prod\"");
    }

    #[test]
    fn a_secret_fits_nothing_but_a_secret() {
        assert!(Ty::Secret.fits(&Ty::Secret));
        assert!(!Ty::Secret.fits(&Ty::Any), "not even `any`: `to_string`, `len`, `default` take `any`");
        assert!(!Ty::Secret.fits(&Ty::String) && !Ty::Secret.is_scalar());
        assert!(Ty::List(Box::new(Ty::Secret)).holds_secret() && !Ty::Any.holds_secret());
    }
}
