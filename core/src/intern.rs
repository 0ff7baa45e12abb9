//! One shared copy of equal values: an [`Interner`] hands out the same [`Arc`] for every value
//! equal to one it has seen, so thousands of equal label maps or label lists (a policy's claims
//! write few distinct ones) cost one allocation. The compiler's checker and lowering share label
//! lists and label maps through it, and the resolver the label maps of instances' uses.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

use crate::FastSet;

/// The distinct values seen so far, each in one [`Arc`]. Only lookups reach the set, never its
/// order, so what it hands out does not depend on the hasher's seed.
#[derive(Debug)]
pub struct Interner<T: ?Sized> {
    shared: FastSet<Arc<T>>,
}

impl<T: ?Sized> Default for Interner<T> {
    fn default() -> Self {
        Interner { shared: FastSet::default() }
    }
}

impl<T: ?Sized + Eq + Hash> Interner<T> {
    /// An empty interner.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shared `Arc` equal to `value`, made from `value` only when none is held yet, so a
    /// repeated value allocates nothing (a `Vec<U>` for an `Arc<[U]>` is looked up as a slice).
    pub fn intern<V>(&mut self, value: V) -> Arc<T>
    where
        V: Borrow<T> + Into<Arc<T>>,
    {
        if let Some(shared) = self.shared.get(value.borrow()) {
            return shared.clone();
        }
        let shared = value.into();
        self.shared.insert(shared.clone());
        shared
    }

    /// Makes `value` the shared `Arc` equal to it; the first value of its kind becomes the shared
    /// one.
    pub fn share(&mut self, value: &mut Arc<T>) {
        match self.shared.get(&**value) {
            Some(shared) => *value = shared.clone(),
            None => {
                self.shared.insert(value.clone());
            }
        }
    }

    /// How many distinct values are held.
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// Whether no value is held.
    pub fn is_empty(&self) -> bool {
        self.shared.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn equal_values_share_one_arc() {
        let mut interner: Interner<[u32]> = Interner::new();
        let a = interner.intern(vec![1, 2]);
        let b = interner.intern(vec![1, 2]);
        let c = interner.intern(vec![2, 1]);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(&*c, &[2, 1]);
        assert_eq!(interner.len(), 2);
    }

    #[test]
    fn share_replaces_an_equal_arc_and_keeps_the_first() {
        let mut interner: Interner<BTreeMap<String, i64>> = Interner::default();
        assert!(interner.is_empty());
        let first = Arc::new(BTreeMap::from([("env".to_string(), 1)]));
        let mut kept = first.clone();
        interner.share(&mut kept);
        assert!(Arc::ptr_eq(&kept, &first));
        let mut equal = Arc::new(BTreeMap::from([("env".to_string(), 1)]));
        interner.share(&mut equal);
        assert!(Arc::ptr_eq(&equal, &first));
        let mut other = Arc::new(BTreeMap::from([("env".to_string(), 2)]));
        interner.share(&mut other);
        assert!(!Arc::ptr_eq(&other, &first));
        assert_eq!(interner.len(), 2);
    }

    #[test]
    fn a_value_held_is_not_allocated_again() {
        let mut interner: Interner<str> = Interner::new();
        let a = interner.intern("team");
        let b = interner.intern(String::from("team"));
        assert!(Arc::ptr_eq(&a, &b));
    }
}
