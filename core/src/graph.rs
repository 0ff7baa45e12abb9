//! The desired state as a Graphviz DOT graph: claims → service instances → components.

use std::fmt::Write;

use crate::resolve::{DesiredState, InstanceKind, Status};

/// DOT text: one cluster box per cluster and Kubernetes namespace, claims as notes.
pub fn to_dot(state: &DesiredState) -> String {
    let mut out = String::from("digraph aptc {\n  rankdir=LR;\n  node [fontname=\"Helvetica\", fontsize=10];\n");
    let mut groups: std::collections::BTreeMap<(&str, &str), Vec<&str>> = std::collections::BTreeMap::new();
    for instance in state.instances.values() {
        groups.entry((&instance.cluster, &instance.k8s_namespace)).or_default().push(&instance.key);
    }
    for (i, ((cluster, namespace), keys)) in groups.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_{i} {{\n    label={};", quote(&format!("{cluster} / {namespace}")));
        for key in keys {
            let instance = &state.instances[*key];
            let (shape, label) = match &instance.kind {
                InstanceKind::Service => ("box3d", format!("{}\n{}", instance.service, instance.context)),
                InstanceKind::Chart { chart, .. } => ("box", format!("{}\nchart {chart}", instance.component)),
                InstanceKind::Manifests { .. } => ("box", format!("{}\nmanifests", instance.component)),
                InstanceKind::Uses { contract } => ("cds", format!("{}\nuses {contract}", instance.component)),
            };
            let _ = writeln!(out, "    {} [shape={shape}, label={}];", quote(key), quote(&label));
        }
        out.push_str("  }\n");
    }
    for instance in state.instances.values() {
        for edge in &instance.edges {
            let _ = writeln!(out, "  {} -> {};", quote(&instance.key), quote(edge));
        }
    }
    for claim in state.claims.values() {
        let color = match claim.status {
            Status::Resolved => "darkgreen",
            Status::Rejected => "orange",
            Status::Failed => "red",
        };
        let _ = writeln!(out, "  {} [shape=note, color={color}, label={}];", quote(&claim.claim), quote(&claim.claim));
        if let Some(root) = &claim.root {
            let _ = writeln!(out, "  {} -> {} [style=dashed];", quote(&claim.claim), quote(root));
        }
    }
    out.push_str("}\n");
    out
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}
