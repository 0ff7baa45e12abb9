//! Cycles of a directed graph, for the checks that forbid them (component dependencies,
//! contracts and services, imports).

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::kosaraju_scc;
use petgraph::graph::{DiGraph, NodeIndex};

/// One cycle per strongly connected component of `graph` that has one, each in order from
/// its smallest node. Linear in the graph (petgraph's Kosaraju, iterative: deep graphs do not
/// exhaust the stack), so it scales to whole policies.
pub fn cycles<K: Ord + Clone>(graph: &BTreeMap<K, Vec<K>>) -> Vec<Vec<K>> {
    let mut indices: BTreeMap<&K, NodeIndex> = BTreeMap::new();
    let mut digraph: DiGraph<&K, ()> = DiGraph::new();
    for (from, targets) in graph {
        let from = *indices.entry(from).or_insert_with(|| digraph.add_node(from));
        for to in targets {
            let to = *indices.entry(to).or_insert_with(|| digraph.add_node(to));
            digraph.add_edge(from, to, ());
        }
    }
    let mut found = Vec::new();
    for component in kosaraju_scc(&digraph) {
        let members: BTreeSet<&K> = component.iter().map(|&index| digraph[index]).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(u32, u32)]) -> BTreeMap<u32, Vec<u32>> {
        let mut graph: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for &(from, to) in edges {
            graph.entry(from).or_default().push(to);
        }
        graph
    }

    #[test]
    fn one_cycle_per_component_from_its_smallest_node() {
        let found = cycles(&graph(&[(3, 1), (1, 2), (2, 3), (4, 4), (5, 6), (6, 7), (7, 6), (8, 9)]));
        assert_eq!(found, vec![vec![1, 2, 3], vec![4], vec![6, 7]]);
        assert!(cycles(&graph(&[(1, 2), (2, 3)])).is_empty());
    }

    #[test]
    fn deep_graphs_do_not_exhaust_the_stack() {
        let chain: Vec<(u32, u32)> = (0..200_000).map(|n| (n, n + 1)).chain([(200_000, 0)]).collect();
        assert_eq!(cycles(&graph(&chain)).first().map(Vec::len), Some(200_001));
    }
}
