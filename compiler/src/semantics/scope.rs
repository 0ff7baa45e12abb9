//! Name resolution: what a name written in a file refers to (docs/language.md §3.5).

use crate::FastMap;
use crate::syntax::ast::SmolStr;
use crate::syntax::edit_distance;
use std::cell::RefCell;

use super::index::{ImportSummary, Index, Kind, ObjectRef};

use aptc_core::ir::SYSTEM_NAMESPACE;

/// The names a file sees: its namespace's objects and what its imports bring in.
pub struct Scope<'a> {
    pub index: &'a Index,
    pub namespace: &'a SmolStr,
    pub imports: &'a [ImportSummary],
    /// What each name written so far resolved to. A file names the same few labels, contracts
    /// and users again and again (a thousand claims each naming four labels, a contract and a
    /// user), and each fresh resolution is several lookups in the workspace's index.
    memo: RefCell<FastMap<Written, Lookup>>,
}

/// A name as written: what kind of object it names, the name, and its namespace if qualified.
type Written = (Kind, SmolStr, Option<SmolStr>);

/// The outcome of resolving a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The object, and the import (by position) that made it visible, if any.
    Found(ObjectRef, Option<usize>),
    /// Nothing of that name: similar names that would resolve, best first.
    NotFound { suggestions: Vec<String> },
    /// Several objects: a conflict between an import and a declaration, or between imports;
    /// with the imports (by position) involved, which are used, not unused.
    Ambiguous(Vec<ObjectRef>, Vec<usize>),
    /// The qualifier is no namespace of the policy.
    UnknownNamespace { namespace: SmolStr, suggestions: Vec<String> },
    /// More than two segments.
    TooLong,
}

impl<'a> Scope<'a> {
    /// The scope of a file of `namespace` with `imports`.
    pub fn new(index: &'a Index, namespace: &'a SmolStr, imports: &'a [ImportSummary]) -> Scope<'a> {
        Scope { index, namespace, imports, memo: RefCell::default() }
    }

    /// Resolves a reference of `kind` written as `segments` (`kafka` or `platform.kafka`).
    pub fn resolve(&self, kind: Kind, segments: &[&str]) -> Lookup {
        let key = match segments {
            [name] => (kind, SmolStr::new(name), None),
            [qualifier, name] => (kind, SmolStr::new(qualifier), Some(SmolStr::new(name))),
            _ => return Lookup::TooLong,
        };
        if let Some(known) = self.memo.borrow().get(&key) {
            return known.clone();
        }
        let found = self.lookup(kind, segments);
        self.memo.borrow_mut().insert(key, found.clone());
        found
    }

    /// [`Scope::resolve`] without the memo.
    fn lookup(&self, kind: Kind, segments: &[&str]) -> Lookup {
        match segments {
            [name] if kind.is_global() => {
                let name = if kind == Kind::User { SmolStr::new(name.to_lowercase()) } else { SmolStr::new(name) };
                if self.index.has(kind, "", &name) {
                    Lookup::Found(ObjectRef { kind, namespace: SmolStr::default(), name }, None)
                } else {
                    Lookup::NotFound { suggestions: closest(&name, self.index.names_in(kind, "")) }
                }
            }
            [name] => self.resolve_unqualified(kind, name),
            [qualifier, name] => self.resolve_qualified(kind, qualifier, name),
            _ => Lookup::TooLong,
        }
    }

    fn resolve_unqualified(&self, kind: Kind, name: &str) -> Lookup {
        let object = |ns: &str, n: &str| ObjectRef { kind, namespace: ns.into(), name: n.into() };
        // 1. object imports naming `name`
        let mut imported: Vec<(ObjectRef, usize)> = Vec::new();
        for (i, import) in self.imports.iter().enumerate() {
            let Some(members) = &import.members else { continue };
            for member in members {
                let visible_as = match (&import.alias, members.len()) {
                    (Some(alias), 1) => alias,
                    _ => member,
                };
                if visible_as == name && self.index.has(kind, &import.namespace, member) {
                    imported.push((object(&import.namespace, member), i));
                }
            }
        }
        // 2. the file's own namespace
        let local = self.index.has(kind, self.namespace, name).then(|| object(self.namespace, name));
        match (imported.len(), local) {
            (1, None) => {
                let (found, via) = imported.remove(0);
                return Lookup::Found(found, Some(via));
            }
            (0, Some(local)) => return Lookup::Found(local, None),
            (0, None) => {}
            (_, local) => {
                let via: Vec<usize> = imported.iter().map(|(_, i)| *i).collect();
                let mut all: Vec<ObjectRef> = imported.into_iter().map(|(o, _)| o).chain(local).collect();
                all.dedup();
                if all.len() == 1 {
                    return Lookup::Found(all.remove(0), via.first().copied());
                }
                return Lookup::Ambiguous(all, via);
            }
        }
        // 3. glob imports
        let globs: Vec<(ObjectRef, usize)> = self
            .imports
            .iter()
            .enumerate()
            .filter(|(_, import)| import.members.is_none() && import.alias.is_none())
            .filter(|(_, import)| self.index.has(kind, &import.namespace, name))
            .map(|(i, import)| (object(&import.namespace, name), i))
            .collect();
        match globs.len() {
            1 => return Lookup::Found(globs[0].0.clone(), Some(globs[0].1)),
            0 => {}
            _ => {
                let via = globs.iter().map(|(_, i)| *i).collect();
                return Lookup::Ambiguous(globs.into_iter().map(|(o, _)| o).collect(), via);
            }
        }
        // 4. clusters of `system`
        if kind == Kind::Cluster && self.index.has(kind, SYSTEM_NAMESPACE, name) {
            return Lookup::Found(object(SYSTEM_NAMESPACE, name), None);
        }
        Lookup::NotFound { suggestions: self.suggest(kind, name) }
    }

    fn resolve_qualified(&self, kind: Kind, qualifier: &str, name: &str) -> Lookup {
        let aliased = self
            .imports
            .iter()
            .enumerate()
            .find(|(_, import)| import.members.is_none() && import.alias.as_deref() == Some(qualifier));
        let (namespace, via) = match aliased {
            Some((i, import)) => (import.namespace.clone(), Some(i)),
            None if self.index.namespaces.contains_key(qualifier) => (SmolStr::new(qualifier), None),
            None => {
                let suggestions = closest(qualifier, self.index.namespaces.keys());
                return Lookup::UnknownNamespace { namespace: qualifier.into(), suggestions };
            }
        };
        if self.index.has(kind, &namespace, name) {
            Lookup::Found(ObjectRef { kind, namespace: namespace.clone(), name: name.into() }, via)
        } else {
            let suggestions = closest(name, self.index.names_in(kind, &namespace))
                .into_iter()
                .map(|s| format!("{qualifier}.{s}"))
                .collect();
            Lookup::NotFound { suggestions }
        }
    }

    /// Visible names close to `name`, then qualified names of same-named objects elsewhere.
    fn suggest(&self, kind: Kind, name: &str) -> Vec<String> {
        let mut visible: Vec<&SmolStr> = self.index.names_in(kind, self.namespace).collect();
        for import in self.imports {
            match &import.members {
                None if import.alias.is_none() => visible.extend(self.index.names_in(kind, &import.namespace)),
                Some(members) => visible.extend(members.iter().filter(|m| self.index.has(kind, &import.namespace, m))),
                None => {}
            }
        }
        if kind == Kind::Cluster {
            visible.extend(self.index.names_in(kind, SYSTEM_NAMESPACE));
        }
        let mut suggestions = closest(name, visible.into_iter());
        suggestions.extend(
            self.index
                .objects
                .keys()
                .filter(|o| o.kind == kind && o.name == name && o.namespace != *self.namespace)
                .map(|o| o.to_string()),
        );
        suggestions.dedup();
        suggestions
    }
}

/// Candidates within a small edit distance of `name`, closest first (at most three).
pub fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a SmolStr>) -> Vec<String> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    let mut scored: Vec<(usize, &SmolStr)> =
        candidates.map(|c| (edit_distance(name, c), c)).filter(|(d, c)| *d <= limit && c.as_str() != name).collect();
    scored.sort();
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.into_iter().take(3).map(|(_, c)| c.to_string()).collect()
}

/// "did you mean `a` or `b`?", for help lines.
pub fn did_you_mean(suggestions: &[String]) -> Option<String> {
    match suggestions {
        [] => None,
        [one] => Some(format!("did you mean `{one}`?")),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|s| format!("`{s}`")).collect();
            Some(format!("did you mean {} or `{last}`?", init.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::edit_distance;

    #[test]
    fn swaps_count_as_one_edit() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("evn", "env"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn suggestions_are_close_and_ordered() {
        let names: Vec<SmolStr> = ["env", "envs", "team", "region"].map(SmolStr::new).to_vec();
        assert_eq!(closest("evn", names.iter()), vec!["env".to_string()]);
        assert_eq!(closest("regoin", names.iter()), vec!["region".to_string()]);
        assert!(closest("zzz", names.iter()).is_empty());
        assert_eq!(did_you_mean(&["a".into(), "b".into()]).unwrap(), "did you mean `a` or `b`?");
    }
}
