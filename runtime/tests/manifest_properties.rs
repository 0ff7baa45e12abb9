//! The checker, the resolver and the drivers' manifest step never panic on any manifest template:
//! a policy whose manifests component reads an arbitrary file is checked (with every diagnostic
//! rendered), and when it checks clean, lowered, resolved, turned into units and parsed into
//! stamped objects. Panics are the failure; errors are fine.

use std::path::Path;

use aptc_compiler::db::Settings;
use aptc_compiler::diagnostics::render;
use aptc_compiler::host::Analysis;
use aptc_compiler::host::check;
use aptc_compiler::source::SourceMap;
use aptc_core::resolve::resolve;
use aptc_runtime::manifest::unit_documents;
use aptc_runtime::plan::units;
use proptest::prelude::*;

const SYSTEM: &str = "namespace system\n\nuser \"ada\"\n\ncluster here {}\n\nrule all {\n    place on here\n}\n";

const APP: &str = "namespace app\n\nlabel size: int = 3\n\nservice app {\n    component config manifests \"k8s/*.yaml\" {\n        values { x = \"v\", n = labels.size, token = secret_env(\"T\") }\n    }\n}\n\ncontract app {\n    context all {\n        use app\n    }\n}\n\nclaim one {\n    user \"ada\"\n    contract app\n}\n";

/// Pieces a template is made of: interpolations (good and broken), YAML structure, escapes.
fn template() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "apiVersion: v1\n",
        "kind: ConfigMap\n",
        "metadata:\n",
        "  name: ",
        "${instance.name}",
        "${values.x}",
        "${values.n}",
        "${values.token}",
        "${labels.size + 1}",
        "${",
        "}",
        "\\${",
        "$",
        "\"",
        "'",
        ": ",
        "- ",
        "\n",
        "---\n",
        "  ",
        "data:\n",
        "${values.missing}",
        "${len(values.x)}",
        "${[1, 2]}",
        "{",
        "[",
        "#",
        "é",
        "\t",
        "\u{0}",
        "...\n",
        "&a ",
        "*a",
        "!!binary ",
    ]);
    (prop::collection::vec(pieces, 0..40), any::<String>())
        .prop_map(|(pieces, noise)| pieces.concat() + &noise.chars().take(4).collect::<String>())
}

fn exercise(dir: &Path, manifest: &str) {
    std::fs::create_dir_all(dir.join("k8s")).unwrap();
    std::fs::write(dir.join("k8s/config.yaml"), manifest).unwrap();
    let mut sources = SourceMap::new();
    sources.add(dir.join("system.apt").to_string_lossy().into_owned(), SYSTEM.to_string());
    sources.add(dir.join("app.apt").to_string_lossy().into_owned(), APP.to_string());
    let result = check(&mut sources);
    let _ = render::render(&sources, &result.diagnostics, false);
    let Ok(program) = Analysis::of_sources(sources, Settings::default()).lower() else { return };
    let state = resolve(&program);
    for unit in units(&state, &aptc_runtime::secrets::Secrets::local()).values() {
        let _ = unit_documents(unit, 1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn any_manifest_template_is_checked_and_resolved_without_panicking(manifest in template()) {
        let dir = tempfile::tempdir().unwrap();
        exercise(dir.path(), &manifest);
    }
}

#[test]
fn the_generated_policy_checks_clean_with_a_good_template() {
    let dir = tempfile::tempdir().unwrap();
    let good = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${instance.name}\ndata:\n  x: \"${values.x}\"\n";
    std::fs::create_dir_all(dir.path().join("k8s")).unwrap();
    std::fs::write(dir.path().join("k8s/config.yaml"), good).unwrap();
    let mut sources = SourceMap::new();
    sources.add(dir.path().join("system.apt").to_string_lossy().into_owned(), SYSTEM.to_string());
    sources.add(dir.path().join("app.apt").to_string_lossy().into_owned(), APP.to_string());
    let result = check(&mut sources);
    assert!(
        result.diagnostics.iter().all(|d| d.severity != aptc_compiler::diagnostics::Severity::Error),
        "{:#?}",
        result.diagnostics
    );
}
