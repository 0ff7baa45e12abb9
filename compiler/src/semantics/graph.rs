//! Cycles of a directed graph, for the checks that forbid them (component dependencies,
//! contracts and services, imports).

use std::collections::{BTreeMap, BTreeSet};

/// One cycle per strongly connected component of `graph` that has one, each in order from
/// its smallest node. Linear in the graph (Tarjan), so it scales to whole policies.
pub fn cycles<K: Ord + Clone>(graph: &BTreeMap<K, Vec<K>>) -> Vec<Vec<K>> {
    struct Tarjan<'g, K> {
        graph: &'g BTreeMap<K, Vec<K>>,
        index: BTreeMap<&'g K, (usize, usize)>,
        stack: Vec<&'g K>,
        on_stack: BTreeSet<&'g K>,
        components: Vec<Vec<&'g K>>,
    }
    impl<'g, K: Ord> Tarjan<'g, K> {
        fn visit(&mut self, node: &'g K) {
            let n = self.index.len();
            self.index.insert(node, (n, n));
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.index[next].1;
                    let entry = self.index.get_mut(node).expect("visited");
                    entry.1 = entry.1.min(low);
                } else if self.on_stack.contains(next) {
                    let low = self.index[next].0;
                    let entry = self.index.get_mut(node).expect("visited");
                    entry.1 = entry.1.min(low);
                }
            }
            let (number, low) = self.index[node];
            if number == low {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }
    let mut tarjan =
        Tarjan { graph, index: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), components: Vec::new() };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    let mut found = Vec::new();
    for component in tarjan.components {
        let members: BTreeSet<&K> = component.iter().copied().collect();
        let start = *members.first().expect("components are not empty");
        let self_loop = graph.get(start).is_some_and(|next| next.contains(start));
        if members.len() == 1 && !self_loop {
            continue;
        }
        // A path from `start` back to it, inside the component.
        let mut path = vec![start];
        let mut seen = BTreeSet::from([start]);
        while let Some(next) =
            graph[path[path.len() - 1]].iter().find(|n| members.contains(n) && (*n == start || !seen.contains(n)))
        {
            if next == start {
                break;
            }
            seen.insert(next);
            path.push(next);
        }
        found.push(path.into_iter().cloned().collect());
    }
    found.sort();
    found
}
