//! Unit tests of the editor queries, on a small policy of three namespaces.

use std::sync::Arc;

use super::*;
use crate::check::load_workspace;
use crate::db::{Database, Settings};
use crate::semantics::scope::did_you_mean;
use crate::source::SourceMap;

const PLATFORM: &str = r#"/// The platform team's shared services.
namespace platform owned_by platform_team

/// Deployment stage.
label env: "dev" | "prod" = "dev"

/// Number of brokers.
label replicas: int = 1

/// Kafka brokers.
service kafka {
    /// The brokers.
    component broker chart "oci://charts.example.com/kafka" {
        values { replicas = labels.replicas }
        discovery { brokers = "kafka-${instance.name}:9092" }
    }
}

/// A message bus.
contract kafka {
    /// Shared in production.
    context prod when labels.env == "prod" {
        use kafka
    }
    context dev {
        allocate per user.name
        use kafka
    }
}
"#;

const ANALYTICS: &str = r#"namespace analytics owned_by app_team

import platform.env

/// The pipeline.
service pipeline {
    component queue uses platform.kafka
    component app chart "oci://charts.example.com/app" {
        after queue
        values { brokers = "${queue.discovery.brokers}", stage = labels.env, name = lower(user.name) }
    }
}

contract pipeline {
    context all {
        use pipeline
    }
}

claim ada_pipeline {
    user "ada@example.com"
    contract pipeline
    labels { env = "dev" }
}
"#;

const SYSTEM: &str = r#"namespace system

team platform_team
team app_team

user "ada@example.com" {
    team app_team
}

cluster local {
    context "kind-kind"
}

rule everything_on_local {
    place on local
}

grant consumer on analytics, platform
"#;

struct Fixture {
    db: Database,
    ws: crate::db::Workspace,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let mut sources = SourceMap::new();
        for (path, text) in files {
            sources.add(*path, *text);
        }
        let mut db = Database::default();
        let ws = load_workspace(&mut db, &sources, Settings::default());
        Fixture { db, ws }
    }

    fn standard() -> Fixture {
        Fixture::new(&[("platform.apt", PLATFORM), ("analytics.apt", ANALYTICS), ("system.apt", SYSTEM)])
    }

    fn file(&self, path: &str) -> SourceText {
        *self.ws.files(&self.db).iter().find(|f| f.path(&self.db).to_str() == Some(path)).expect("file")
    }

    fn id(&self, path: &str) -> FileId {
        self.file(path).id(&self.db)
    }

    /// The offset of `needle` in `path`, plus `delta`.
    fn at(&self, path: &str, needle: &str, delta: u32) -> u32 {
        let text = self.file(path).text(&self.db).clone();
        text.find(needle).unwrap_or_else(|| panic!("`{needle}` not in {path}")) as u32 + delta
    }

    fn text_at(&self, place: FileSpan) -> String {
        let file = source(&self.db, self.ws, place.file).expect("file");
        file.text(&self.db)[place.span.range()].to_string()
    }

    fn complete(&self, path: &str, needle: &str, delta: u32) -> Vec<String> {
        let offset = self.at(path, needle, delta);
        completions(&self.db, self.ws, self.file(path), offset).items.into_iter().map(|c| c.label).collect()
    }
}

#[test]
fn definition_of_a_qualified_reference_is_the_contract() {
    let f = Fixture::standard();
    let offset = f.at("analytics.apt", "platform.kafka", 10);
    let found = definition_at(&f.db, f.ws, f.file("analytics.apt"), offset);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].file, f.id("platform.apt"));
    assert_eq!(found[0].span.start, f.at("platform.apt", "contract kafka", 9));
    // The qualifier is the namespace: its declaration.
    let ns = definition_at(&f.db, f.ws, f.file("analytics.apt"), f.at("analytics.apt", "platform.kafka", 2));
    assert_eq!(ns.len(), 1);
    assert_eq!(f.text_at(ns[0]), "platform");
}

#[test]
fn definitions_of_components_labels_teams_and_functions() {
    let f = Fixture::standard();
    let after = definition_at(&f.db, f.ws, f.file("analytics.apt"), f.at("analytics.apt", "after queue", 7));
    assert_eq!(after[0].span.start, f.at("analytics.apt", "queue uses", 0));
    let discovery = definition_at(&f.db, f.ws, f.file("analytics.apt"), f.at("analytics.apt", "queue.discovery", 1));
    assert_eq!(discovery, after);
    let label = definition_at(&f.db, f.ws, f.file("analytics.apt"), f.at("analytics.apt", "labels.env", 8));
    assert_eq!(label[0].file, f.id("platform.apt"));
    assert_eq!(f.text_at(label[0]), "env");
    let team = definition_at(&f.db, f.ws, f.file("analytics.apt"), f.at("analytics.apt", "app_team", 1));
    assert_eq!(team[0].file, f.id("system.apt"));
    let function = definition_at(&f.db, f.ws, f.file("analytics.apt"), f.at("analytics.apt", "lower(", 2));
    assert_eq!(function.len(), 1);
    assert_eq!(f.text_at(function[0]), "lower");
    // Nothing to find on a keyword.
    assert!(definition_at(&f.db, f.ws, f.file("analytics.apt"), f.at("analytics.apt", "service", 2)).is_empty());
}

#[test]
fn references_span_files() {
    let f = Fixture::standard();
    let offset = f.at("platform.apt", "label env", 7);
    let all = references(&f.db, f.ws, f.file("platform.apt"), offset, true);
    let files: Vec<FileId> = all.iter().map(|r| r.file).collect();
    assert!(files.contains(&f.id("platform.apt")) && files.contains(&f.id("analytics.apt")));
    // declaration, `labels.env ==` in platform; the import, `labels.env`, `env =` in analytics.
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(all.iter().all(|r| f.text_at(*r) == "env"));
    let uses = references(&f.db, f.ws, f.file("platform.apt"), offset, false);
    assert_eq!(uses.len(), 4);
    // The service `kafka` is used by both contexts, not by the contract of the same name.
    let service = references(&f.db, f.ws, f.file("platform.apt"), f.at("platform.apt", "service kafka", 9), false);
    assert_eq!(service.len(), 2);
    let namespace = references(&f.db, f.ws, f.file("system.apt"), f.at("system.apt", "analytics,", 1), true);
    assert_eq!(namespace.len(), 2, "the declaration and the grant");
}

#[test]
fn hover_shows_declaration_type_and_docs() {
    let f = Fixture::standard();
    let on_label = hover(&f.db, f.ws, f.file("analytics.apt"), f.at("analytics.apt", "labels.env", 8)).unwrap();
    assert!(on_label.markdown.contains(r#"label env: "dev" | "prod" = "dev""#), "{}", on_label.markdown);
    assert!(on_label.markdown.contains("Deployment stage."));
    assert!(on_label.markdown.contains("label `platform.env`"));
    let on_contract = hover(&f.db, f.ws, f.file("analytics.apt"), f.at("analytics.apt", "platform.kafka", 10)).unwrap();
    assert!(on_contract.markdown.contains("contract kafka"), "{}", on_contract.markdown);
    assert!(on_contract.markdown.contains("A message bus."));
    assert!(on_contract.markdown.contains("contexts `prod`, `dev`"));
    assert!(on_contract.markdown.contains("declared in `platform.apt`, line 20"), "{}", on_contract.markdown);
    let on_function = hover(&f.db, f.ws, f.file("analytics.apt"), f.at("analytics.apt", "lower(", 1)).unwrap();
    assert!(on_function.markdown.contains("fn lower(s: string) -> string"), "{}", on_function.markdown);
    assert!(on_function.markdown.contains("Lower-cases"));
    let on_component =
        hover(&f.db, f.ws, f.file("platform.apt"), f.at("platform.apt", "component broker", 11)).unwrap();
    assert!(on_component.markdown.contains(r#"component broker chart "oci://charts.example.com/kafka""#));
    assert!(on_component.markdown.contains("publishes `brokers`"));
    assert!(hover(&f.db, f.ws, f.file("platform.apt"), 0).is_none());
}

#[test]
fn hover_explains_keywords_and_built_in_names() {
    let f = Fixture::standard();
    let shown = |path: &str, needle: &str, delta: u32| {
        hover(&f.db, f.ws, f.file(path), f.at(path, needle, delta)).map(|h| h.markdown).unwrap_or_default()
    };
    let field = shown("analytics.apt", "user.name)", 6);
    assert!(field.contains("user.name: string") && field.contains("the user's name"), "{field}");
    let instance = shown("platform.apt", "instance.name}", 10);
    assert!(instance.contains("instance.name: string") && instance.contains("Helm release"), "{instance}");
    let root = shown("platform.apt", "instance.name}", 2);
    assert!(root.contains("The component instance being resolved"), "{root}");
    let keyword = shown("platform.apt", "context prod", 2);
    assert!(keyword.contains("keyword · A way a contract can be served"), "{keyword}");
    let allocate = shown("platform.apt", "allocate per", 1);
    assert!(allocate.contains("Which consumers share one instance"), "{allocate}");
}

#[test]
fn signature_help_names_the_function_and_the_argument_being_written() {
    let f = Fixture::new(&[(
        "a.apt",
        "namespace a\n\nlabel n: string = \"x\"\n\nrule r when starts_with(lower(labels.n), join([\"a\", \"b\"], \"-\")) {\n    set labels.n = \"${truncate(labels.n, 3)}\"\n}\n",
    )]);
    let at = |needle: &str, delta: u32| signature_help(&f.db, f.ws, f.file("a.apt"), f.at("a.apt", needle, delta));
    let outer = at("lower(", 0).unwrap();
    assert_eq!(outer.label, "starts_with(s: string, prefix: string) -> bool");
    assert_eq!((outer.active, outer.parameters[0]), (0, (12, 21)));
    assert!(outer.docs.is_some_and(|d| !d.is_empty()));
    let inner = at("labels.n)", 3).unwrap();
    assert_eq!((inner.label.as_str(), inner.active), ("lower(s: string) -> string", 0));
    let second = at("join([", 7).unwrap();
    assert_eq!(
        (second.label.as_str(), second.active),
        ("join(parts: [string], sep: string) -> string", 0),
        "inside the list"
    );
    let after_list = at("\"-\"))", 1).unwrap();
    assert_eq!((after_list.label.starts_with("join("), after_list.active), (true, 1));
    let interpolated = at(", 3)}", 2).unwrap();
    assert_eq!((interpolated.label.starts_with("truncate("), interpolated.active), (true, 1));
    assert!(at("rule r", 0).is_none(), "not in a call");
}

#[test]
fn completion_by_position() {
    let f = Fixture::new(&[
        ("platform.apt", PLATFORM),
        ("system.apt", SYSTEM),
        (
            "edit.apt",
            "namespace analytics\n\nimport platform.env\n\nservice t {\n    component q uses \n}\n\nservice s {\n    component q uses platform.kafka\n    component a chart \"x\" {\n        after q\n        values { u = \"${q.discovery.}\", e = labels. }\n    }\n    \n}\n\nclaim c {\n    contract platform.kafka\n    labels { env = \"d\" }\n}\n\ncontract s {\n    context c when labels.env ==  {\n        use s\n    }\n}\n",
        ),
    ]);
    let uses = f.complete("edit.apt", "uses \n", 5);
    assert!(uses.contains(&"platform.kafka".to_string()), "{uses:?}");
    let discovery = f.complete("edit.apt", "discovery.}", 10);
    assert_eq!(discovery, ["brokers"]);
    let labels = f.complete("edit.apt", "labels. }", 7);
    assert_eq!(labels, ["env"], "only the imported label is visible");
    let statement = f.complete("edit.apt", "    \n}", 4);
    assert_eq!(statement, ["component"]);
    let top = f.complete("edit.apt", "claim c", 0);
    assert!(top.contains(&"service".to_string()) && top.contains(&"claim".to_string()));
    let value = f.complete("edit.apt", "env = \"d\"", 8);
    assert_eq!(value, ["\"dev\"", "\"prod\""]);
    let compared = f.complete("edit.apt", "==  {", 3);
    assert!(compared.contains(&"\"prod\"".to_string()) && compared.contains(&"lower".to_string()), "{compared:?}");
    let qualified = f.complete("edit.apt", "platform.kafka\n", 9);
    assert_eq!(qualified, ["kafka"]);
    let keys = f.complete("edit.apt", "{ env = ", 2);
    assert!(keys.contains(&"env".to_string()));
    // Completion details: a function's signature, a label's type.
    let offset = f.at("edit.apt", "==  {", 3);
    let items = completions(&f.db, f.ws, f.file("edit.apt"), offset).items;
    let lower = items.iter().find(|c| c.label == "lower").unwrap();
    assert_eq!(lower.detail.as_deref(), Some("fn lower(s: string) -> string"));
    assert!(lower.documentation.as_deref().unwrap_or_default().contains("Lower-cases"));
    let secret = items.iter().find(|c| c.label == "secret_env").unwrap();
    assert_eq!(secret.detail.as_deref(), Some("fn secret_env(name: string) -> secret"), "from the prelude");
    let k8s = items.iter().find(|c| c.label == "secret_k8s").unwrap();
    assert_eq!(k8s.detail.as_deref(), Some("fn secret_k8s(name: string, key: string) -> secret"));
    assert!(k8s.documentation.as_deref().unwrap_or_default().contains("Kubernetes Secret"));
    // The word being typed is replaced.
    let partial = f.at("edit.apt", "component q", 5);
    let list = completions(&f.db, f.ws, f.file("edit.apt"), partial);
    assert_eq!(list.replace, Span { start: partial - 5, end: partial });
    assert_eq!(list.items.iter().map(|c| c.label.as_str()).collect::<Vec<_>>(), ["component"]);
    // Nothing inside a comment.
    let commented = Fixture::new(&[("a.apt", "namespace a\n// labels.\n")]);
    assert!(commented.complete("a.apt", "labels.", 7).is_empty());
}

#[test]
fn rename_is_workspace_wide_and_refuses_bad_names() {
    let f = Fixture::standard();
    let offset = f.at("platform.apt", "contract kafka", 9);
    let edits = rename(&f.db, f.ws, f.file("platform.apt"), offset, "bus").unwrap();
    let places: Vec<(FileId, String)> =
        edits.iter().map(|e| (e.file, f.text_at(FileSpan { file: e.file, span: e.span }))).collect();
    assert_eq!(places, [(f.id("platform.apt"), "kafka".to_string()), (f.id("analytics.apt"), "kafka".to_string())]);
    assert!(
        rename(&f.db, f.ws, f.file("platform.apt"), offset, "2bad")
            .unwrap_err()
            .to_string()
            .contains("not a valid name")
    );
    assert!(rename(&f.db, f.ws, f.file("platform.apt"), offset, "service").is_err(), "a keyword");
    assert!(rename(&f.db, f.ws, f.file("platform.apt"), offset, "a b").is_err());
    let label = f.at("platform.apt", "label env", 7);
    assert!(
        rename(&f.db, f.ws, f.file("platform.apt"), label, "replicas").unwrap_err().to_string().contains("already")
    );
    let user = f.at("system.apt", "ada@", 0);
    assert!(rename(&f.db, f.ws, f.file("system.apt"), user, "bob").is_err());
    let label_edits = rename(&f.db, f.ws, f.file("platform.apt"), label, "stage").unwrap();
    assert_eq!(label_edits.len(), 5);
    assert!(prepare_rename(&f.db, f.ws, f.file("platform.apt"), 0).is_err());
}

#[test]
fn symbols_outline_and_workspace() {
    let f = Fixture::standard();
    let symbols = document_symbols(&f.db, f.file("platform.apt"));
    let names: Vec<&str> = symbols.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["platform", "env", "replicas", "kafka", "kafka"]);
    assert_eq!(symbols[3].kind, SymbolKind::Service);
    assert_eq!(symbols[3].children[0].name, "broker");
    assert_eq!(symbols[4].children.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["prod", "dev"]);
    let found = workspace_symbols(&f.db, f.ws, "pipe", 100);
    assert!(found.iter().any(|s| s.symbol.name == "pipeline" && s.symbol.kind == SymbolKind::Contract));
    assert!(found.iter().any(|s| s.symbol.name == "ada_pipeline"));
    assert_eq!(workspace_symbols(&f.db, f.ws, "", 3).len(), 3);
}

#[test]
fn semantic_tokens_classify_names_and_never_overlap() {
    let f = Fixture::standard();
    let file = f.file("analytics.apt");
    let tokens = semantic_tokens(&f.db, f.ws, file);
    for pair in tokens.windows(2) {
        assert!(pair[0].span.end <= pair[1].span.start, "{pair:?}");
    }
    let kind_at = |needle: &str, delta: u32| {
        let offset = f.at("analytics.apt", needle, delta);
        tokens.iter().find(|t| t.span.start <= offset && offset < t.span.end).map(|t| (t.kind, t.modifiers))
    };
    assert_eq!(kind_at("platform.kafka", 10), Some((TokenKind::Contract, 0)));
    assert_eq!(kind_at("platform.kafka", 1), Some((TokenKind::Namespace, 0)));
    assert_eq!(kind_at("service pipeline", 9), Some((TokenKind::Service, TokenModifier::DECLARATION)));
    assert_eq!(kind_at("service", 1), Some((TokenKind::Keyword, 0)));
    assert_eq!(kind_at("queue.discovery", 1), Some((TokenKind::Component, 0)));
    assert_eq!(kind_at("${queue", 0), Some((TokenKind::String, 0)));
    assert_eq!(kind_at("lower", 1), Some((TokenKind::Function, TokenModifier::DEFAULT_LIBRARY)));
    assert_eq!(kind_at("env = ", 0), Some((TokenKind::Label, 0)));
}

#[test]
fn folding_ranges_cover_blocks_and_comments() {
    let f = Fixture::new(&[(
        "a.apt",
        "// one\n// two\nnamespace a\n\nimport b\nimport c\n\nservice s {\n    component x chart \"y\" {\n        values {\n            a = 1\n        }\n    }\n}\n",
    )]);
    let folds = folding_ranges(&f.db, f.file("a.apt"));
    let kinds: Vec<FoldKind> = folds.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FoldKind::Comment, FoldKind::Imports, FoldKind::Region, FoldKind::Region, FoldKind::Region]);
}

#[test]
fn quick_fixes() {
    let text = "namespace analytics\n\nimport platform\n\nservice s {\n    component q uses kafak\n}\n\ncontract s {\n    context c when labels.evn == \"dev\" and labels.region == \"eu\" {\n        use s\n    }\n}\n";
    let f = Fixture::new(&[("platform.apt", PLATFORM), ("system.apt", SYSTEM), ("a.apt", text)]);
    let file = f.file("a.apt");
    let whole = Span { start: 0, end: text.len() as u32 };
    let actions = code_actions(&f.db, f.ws, file, whole);
    let titles: Vec<&str> = actions.iter().map(|a| a.title.as_str()).collect();
    assert!(titles.contains(&"Replace `kafak` with `kafka`"), "{titles:?}");
    assert!(titles.contains(&"Replace `evn` with `env`"), "{titles:?}");
    assert!(titles.contains(&"Declare `label region: string` in namespace `analytics`"), "{titles:?}");
    let declare = actions.iter().find(|a| a.title.starts_with("Declare `label region")).unwrap();
    assert_eq!(declare.edits[0].text, "\n\nlabel region: string");
    assert_eq!(declare.edits[0].span.start, f.at("a.apt", "import platform", 15));
    // An object of another namespace that is not imported.
    let text = "namespace analytics\n\nservice s {\n    component q uses kafka\n}\n";
    let f = Fixture::new(&[("platform.apt", PLATFORM), ("system.apt", SYSTEM), ("a.apt", text)]);
    let actions = code_actions(&f.db, f.ws, f.file("a.apt"), Span { start: 0, end: text.len() as u32 });
    let import = actions.iter().find(|a| a.title.starts_with("Import")).expect("an import fix");
    assert_eq!(import.title, "Import contract `kafka` from namespace `platform`");
    assert_eq!(import.edits[0].text, "\n\nimport platform.kafka");
    // An unused import is removed.
    let text = "namespace analytics\n\nimport platform\n\nlabel x: int = 1\n";
    let f = Fixture::new(&[("platform.apt", PLATFORM), ("system.apt", SYSTEM), ("a.apt", text)]);
    let actions = code_actions(&f.db, f.ws, f.file("a.apt"), Span { start: 0, end: text.len() as u32 });
    let remove = actions.iter().find(|a| a.title == "Remove the unused import").expect("a removal");
    assert_eq!(f.text_at(FileSpan { file: f.id("a.apt"), span: remove.edits[0].span }), "import platform\n");
}

#[test]
fn did_you_mean_round_trips() {
    for names in [vec!["a".to_string()], vec!["a".into(), "b".into()], vec!["x.y".into(), "\"dev\"".into(), "c".into()]]
    {
        assert_eq!(actions::suggestions_in(&did_you_mean(&names).unwrap()), names);
    }
    assert_eq!(actions::suggestions_in("did you mean `admin`? The roles are `a`, `b`"), ["admin"]);
    assert!(actions::suggestions_in("the conditions exclude each other; did you mean `or`?").is_empty());
}

#[test]
fn inlay_hints_show_label_types_where_values_are_written() {
    let f = Fixture::standard();
    let file = f.file("analytics.apt");
    let hints = inlay_hints(&f.db, f.ws, file, Span { start: 0, end: u32::MAX });
    assert_eq!(hints.len(), 1, "{hints:?}");
    assert_eq!(hints[0].label, r#": "dev" | "prod""#);
    assert_eq!(hints[0].offset, f.at("analytics.apt", "env = \"dev\"", 3));
}

#[test]
fn formatting_matches_fmt_and_refuses_broken_files() {
    let f = Fixture::new(&[("a.apt", "namespace a\nlabel x:int=1;\n"), ("b.apt", "namespace b\nservice {")]);
    let expected = crate::syntax::format::format_source(FileId(0), "namespace a\nlabel x:int=1;\n").unwrap();
    assert_eq!(format(&f.db, f.file("a.apt")).unwrap(), expected);
    assert_eq!(expected, "namespace a\nlabel x: int = 1\n");
    assert_eq!(format(&f.db, f.file("b.apt")), None);
}

/// Every query answers, without panicking, at every offset of every prefix of a file (the
/// states a file passes through while it is typed).
#[test]
fn every_query_answers_on_every_prefix() {
    for (path, text) in [("analytics.apt", ANALYTICS), ("tests.apt", TESTS)] {
        every_query_on_every_prefix_of(path, text);
    }
}

fn every_query_on_every_prefix_of(path: &str, text: &str) {
    let mut f = Fixture::with_tests();
    let file = f.file(path);
    for cut in (0..text.len()).step_by(7).filter(|&c| text.is_char_boundary(c)) {
        f.db.set_text(file, Arc::from(&text[..cut]));
        let (db, ws) = (&f.db, f.ws);
        let len = cut as u32;
        let _ = crate::check::diagnostics(db, ws);
        let _ = semantic_tokens(db, ws, file);
        let _ = folding_ranges(db, file);
        let _ = document_symbols(db, file);
        let _ = format(db, file);
        let _ = code_actions(db, ws, file, Span { start: 0, end: len });
        let _ = inlay_hints(db, ws, file, Span { start: 0, end: len });
        for offset in (0..=len).step_by(5) {
            let _ = completions(db, ws, file, offset);
            let _ = hover(db, ws, file, offset);
            let _ = definition_at(db, ws, file, offset);
            let _ = references(db, ws, file, offset, true);
            let _ = rename(db, ws, file, offset, "x");
        }
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        /// Random edits of a real file: every query answers, and tokens stay ordered.
        #[test]
        fn queries_survive_random_edits(edits in proptest::collection::vec((any::<u16>(), any::<u8>(), "[a-z{}\"$.=\n ]{0,6}"), 1..6)) {
            let mut f = Fixture::standard();
            let file = f.file("platform.apt");
            let mut text = PLATFORM.to_string();
            for (at, delete, insert) in edits {
                let mut start = at as usize % (text.len() + 1);
                while !text.is_char_boundary(start) { start -= 1; }
                let mut end = (start + delete as usize % 8).min(text.len());
                while !text.is_char_boundary(end) { end -= 1; }
                text.replace_range(start..end, &insert);
            }
            f.db.set_text(file, Arc::from(text.as_str()));
            let (db, ws) = (&f.db, f.ws);
            let tokens = semantic_tokens(db, ws, file);
            for pair in tokens.windows(2) {
                prop_assert!(pair[0].span.end <= pair[1].span.start);
            }
            for offset in (0..=text.len() as u32).step_by(11) {
                let _ = completions(db, ws, file, offset);
                let _ = hover(db, ws, file, offset);
                let _ = references(db, ws, file, offset, true);
            }
            let _ = code_actions(db, ws, file, Span { start: 0, end: text.len() as u32 });
        }
    }
}

#[test]
fn completion_after_commas_in_maps_and_inside_imports() {
    let f = Fixture::new(&[
        ("platform.apt", PLATFORM),
        ("system.apt", "namespace system\n\nteam platform_team\nteam app_team\n"),
        (
            "edit.apt",
            "namespace analytics\n\nimport platform.{ }\nimport platform.{ env, }\nimport platform.\nimport platform.env\nimport platform.replicas\n\nclaim c {\n    user \"ada@example.com\"\n    contract platform.kafka\n    labels { env = \"dev\",  }\n}\n",
        ),
    ]);
    // After a comma in a labels map: the keys not written yet.
    assert_eq!(f.complete("edit.apt", "\"dev\",  }", 7), ["replicas"]);
    // Inside `import ns.{`, after `{` and after a comma; after `import ns.`: each name once
    // (`kafka` is a service and a contract; one import brings both).
    assert_eq!(f.complete("edit.apt", "{ }", 2), ["kafka", "env", "replicas"]);
    assert_eq!(f.complete("edit.apt", "env, }", 5), ["kafka", "env", "replicas"]);
    assert_eq!(f.complete("edit.apt", "platform.\n", 9), ["kafka", "env", "replicas"]);
}

/// Tests of the analytics namespace: their own user and claim, and expectations naming the
/// policy's claims, components, contexts and clusters.
const TESTS: &str = r#"namespace analytics

import platform.env

/// Bea gets the pipeline on the local cluster.
test pipelines {
    user "bea@example.com" {
        team app_team
        labels { env = "dev" }
    }
    claim bea_pipeline {
        user "bea@example.com"
        contract pipeline
        labels { env = "prod" }
    }

    expect claim bea_pipeline resolved
    expect claim ada_pipeline resolved
    expect instance pipeline.app for ada_pipeline {
        context all
        cluster system.local
    }
    expect instance platform.kafka.broker for analytics.bea_pipeline
    expect no instance pipeline.queue for missing
}
"#;

impl Fixture {
    fn with_tests() -> Fixture {
        Fixture::new(&[
            ("platform.apt", PLATFORM),
            ("analytics.apt", ANALYTICS),
            ("system.apt", SYSTEM),
            ("tests.apt", TESTS),
        ])
    }

    /// The files with `edits` applied.
    fn edited(&self, edits: &[Edit]) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for &file in self.ws.files(&self.db) {
            let path = file.path(&self.db).to_string_lossy().into_owned();
            if !path.ends_with(".apt") || path.starts_with('<') || path.contains("prelude") {
                continue;
            }
            let mut text = file.text(&self.db).to_string();
            let mut mine: Vec<&Edit> = edits.iter().filter(|e| e.file == file.id(&self.db)).collect();
            mine.sort_by_key(|e| std::cmp::Reverse(e.span.start));
            for edit in mine {
                text.replace_range(edit.span.range(), &edit.text);
            }
            out.push((path, text));
        }
        out
    }

    /// The errors `aptc check` reports for the workspace.
    fn errors(&self) -> Vec<String> {
        crate::check::diagnostics(&self.db, self.ws)
            .iter()
            .filter(|d| d.is_error())
            .map(|d| d.message.clone())
            .collect()
    }
}

#[test]
fn names_in_test_blocks_resolve() {
    let f = Fixture::with_tests();
    let tests = f.file("tests.apt");
    let errors: Vec<String> = f.errors().into_iter().filter(|e| !e.contains("`missing`")).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let target = |needle: &str, delta: u32| {
        occurrence_at(&f.db, f.ws, tests, f.at("tests.apt", needle, delta)).map(|o| o.target.describe())
    };
    assert_eq!(target("test pipelines", 5).as_deref(), Some("test `analytics.pipelines`"));
    assert_eq!(target("contract pipeline", 9).as_deref(), Some("contract `analytics.pipeline`"));
    assert_eq!(target("team app_team", 5).as_deref(), Some("team `app_team`"));
    assert_eq!(target("env = \"dev\"", 0).as_deref(), Some("label `platform.env`"));
    assert_eq!(target("env = \"prod\"", 0).as_deref(), Some("label `platform.env`"));
    assert_eq!(target("claim ada_pipeline", 6).as_deref(), Some("claim `analytics.ada_pipeline`"));
    assert_eq!(target("pipeline.app", 9).as_deref(), Some("component `app` of service `analytics.pipeline`"));
    assert_eq!(target("pipeline.app", 0).as_deref(), Some("service `analytics.pipeline`"));
    assert_eq!(target("platform.kafka.broker", 0).as_deref(), Some("namespace `platform`"));
    assert_eq!(target("kafka.broker", 6).as_deref(), Some("component `broker` of service `platform.kafka`"));
    assert_eq!(target("context all", 8).as_deref(), Some("context `all` of contract `analytics.pipeline`"));
    assert_eq!(target("system.local", 7).as_deref(), Some("cluster `system.local`"));
    assert_eq!(target("missing", 0), None, "unresolved names are left out");
    // The test's own claim and user are the test's: definition and references stay in it.
    let local = "claim `bea_pipeline` of test `analytics.pipelines`";
    assert_eq!(target("claim bea_pipeline {", 6).as_deref(), Some(local));
    assert_eq!(target("claim bea_pipeline resolved", 6).as_deref(), Some(local));
    assert_eq!(target("analytics.bea_pipeline", 10).as_deref(), Some(local));
    assert_eq!(target("user \"bea@", 6).as_deref(), Some("user `bea@example.com` of test `analytics.pipelines`"));
    let uses = references(&f.db, f.ws, tests, f.at("tests.apt", "bea_pipeline resolved", 0), true);
    assert_eq!(uses.len(), 3);
    let definition = definition_at(&f.db, f.ws, tests, f.at("tests.apt", "bea@example.com\"\n        contract", 0));
    assert_eq!(definition.len(), 1);
    assert_eq!(f.text_at(definition[0]), "bea@example.com");
    // References of policy objects include their uses in tests.
    let claim = references(&f.db, f.ws, f.file("analytics.apt"), f.at("analytics.apt", "claim ada_pipeline", 6), false);
    assert_eq!(claim.iter().filter(|p| p.file == f.id("tests.apt")).count(), 2);
}

#[test]
fn renames_reach_test_blocks_and_the_policy_still_checks() {
    let f = Fixture::with_tests();
    let before = f.errors();
    assert_eq!(before.len(), 1, "only the unknown claim `missing`: {before:?}");
    let cases: [(&str, &str, u32, &str, usize); 8] = [
        ("platform.apt", "label env", 6, "stage", 3),
        ("analytics.apt", "claim ada_pipeline", 6, "ada_pipes", 2),
        ("analytics.apt", "component app", 10, "application", 1),
        ("analytics.apt", "contract pipeline", 9, "pipes", 1),
        ("system.apt", "cluster local", 8, "home", 1),
        ("platform.apt", "component broker", 10, "brokers", 1),
        ("tests.apt", "claim bea_pipeline", 6, "bea_pipes", 3),
        ("analytics.apt", "context all", 8, "every", 1),
    ];
    for (path, needle, delta, new_name, in_tests) in cases {
        let edits = rename(&f.db, f.ws, f.file(path), f.at(path, needle, delta), new_name)
            .unwrap_or_else(|e| panic!("rename `{needle}`: {e}"));
        let tests_edits = edits.iter().filter(|e| e.file == f.id("tests.apt")).count();
        assert_eq!(tests_edits, in_tests, "edits of tests.apt renaming `{needle}`: {edits:?}");
        let files = f.edited(&edits);
        let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
        let renamed = Fixture::new(&refs);
        assert_eq!(renamed.errors(), before, "after renaming `{needle}` to `{new_name}`");
    }
    // A test's claim may not take the name of a claim of its namespace, nor the reverse.
    let local = f.at("tests.apt", "claim bea_pipeline", 6);
    assert!(rename(&f.db, f.ws, f.file("tests.apt"), local, "ada_pipeline").is_err());
    let policy = f.at("analytics.apt", "claim ada_pipeline", 6);
    assert!(rename(&f.db, f.ws, f.file("analytics.apt"), policy, "bea_pipeline").is_err());
    assert!(rename(&f.db, f.ws, f.file("tests.apt"), f.at("tests.apt", "user \"bea@", 6), "bob").is_err());
}

#[test]
fn tests_have_an_outline_folds_and_inlay_hints() {
    let f = Fixture::with_tests();
    let tests = f.file("tests.apt");
    let symbols = document_symbols(&f.db, tests);
    let names: Vec<(&str, SymbolKind)> = symbols.iter().map(|s| (s.name.as_str(), s.kind)).collect();
    assert_eq!(names, [("analytics", SymbolKind::Namespace), ("pipelines", SymbolKind::Test)]);
    let test = &symbols[1];
    assert_eq!(test.detail.as_deref(), Some("5 expectations"));
    let children: Vec<(&str, SymbolKind)> = test.children.iter().map(|s| (s.name.as_str(), s.kind)).collect();
    assert_eq!(children, [("bea@example.com", SymbolKind::User), ("bea_pipeline", SymbolKind::Claim)]);
    assert_eq!(test.children[1].detail.as_deref(), Some("contract pipeline"));
    let found = workspace_symbols(&f.db, f.ws, "bea_pipe", 10);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].container.as_deref(), Some("pipelines"));

    let folds: Vec<String> = folding_ranges(&f.db, tests)
        .iter()
        .filter(|fold| fold.kind == FoldKind::Region)
        .map(|fold| {
            f.text_at(FileSpan { file: f.id("tests.apt"), span: fold.span })
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(folds.len(), 4, "the test, its user, its claim and the expected instance: {folds:?}");

    let all = Span { start: 0, end: TESTS.len() as u32 };
    let hints: Vec<(String, String)> = inlay_hints(&f.db, f.ws, tests, all)
        .into_iter()
        .map(|h| (TESTS[..h.offset as usize].rsplit(['{', ' ']).next().unwrap_or_default().to_string(), h.label))
        .collect();
    let ty = ": \"dev\" | \"prod\"".to_string();
    assert_eq!(hints, [("env".to_string(), ty.clone()), ("env".to_string(), ty)], "user and claim labels");
}

#[test]
fn completion_hover_and_definition_inside_tests() {
    let f = Fixture::with_tests();
    let complete = |needle: &str, delta: u32| f.complete("tests.apt", needle, delta);
    // At the start of a test's statement, and of an expected instance's.
    let in_test = complete("\n    claim bea_pipeline", 1);
    assert_eq!(in_test, ["claim", "user", "expect"]);
    let in_expectation = complete("        context all", 8);
    assert_eq!(in_expectation, ["context", "cluster", "namespace", "values"]);
    // A test's claim and user complete as the policy's do.
    assert!(complete("contract pipeline", 9).contains(&"pipeline".to_string()));
    assert!(complete("contract pipeline", 9).contains(&"platform.kafka".to_string()));
    let users = complete("user \"bea@example.com\"\n        contract", 5);
    assert!(users.contains(&"\"ada@example.com\"".to_string()) && users.contains(&"\"bea@example.com\"".to_string()));
    assert!(complete("team app_team", 5).contains(&"app_team".to_string()));
    assert!(complete("env = \"prod\"", 0).contains(&"env".to_string()), "label keys");
    let values = complete("env = \"prod\"", 6);
    assert_eq!(values, ["\"dev\"", "\"prod\""], "enum values");
    // Expectations.
    assert_eq!(complete("expect claim bea", 7), ["claim", "instance", "no", "instances"]);
    let claims = complete("expect claim bea", 13);
    assert_eq!(claims.first().map(String::as_str), Some("bea_pipeline"), "the test's own first: {claims:?}");
    assert!(claims.contains(&"ada_pipeline".to_string()));
    assert_eq!(complete("bea_pipeline resolved", 13), ["resolved", "rejected"]);
    assert!(complete("instance pipeline.app", 9).contains(&"pipeline".to_string()), "services");
    assert_eq!(complete("pipeline.app", 9), ["queue", "app"], "components of the service");
    assert_eq!(complete("platform.kafka.broker", 9), ["kafka"], "services of a namespace");
    assert_eq!(complete("pipeline.app for", 13), ["for"]);
    assert!(complete("for ada_pipeline", 4).contains(&"bea_pipeline".to_string()));
    assert_eq!(complete("analytics.bea_pipeline", 10), ["ada_pipeline"], "claims of a namespace");
    assert_eq!(complete("no instance", 3), ["instance"]);
    assert_eq!(complete("context all", 8), ["all"], "the contexts that use the service");
    assert!(complete("cluster system.local", 8).contains(&"local".to_string()));

    // Hover and definition on names in a test.
    let tests = f.file("tests.apt");
    let on_contract = hover(&f.db, f.ws, tests, f.at("tests.apt", "contract pipeline", 10)).expect("hover");
    assert!(on_contract.markdown.contains("contract `analytics.pipeline`"), "{}", on_contract.markdown);
    let on_local = hover(&f.db, f.ws, tests, f.at("tests.apt", "bea_pipeline resolved", 1)).expect("hover");
    assert!(on_local.markdown.contains("claim bea_pipeline"), "{}", on_local.markdown);
    assert!(on_local.markdown.contains("of test `analytics.pipelines`"), "{}", on_local.markdown);
    let on_test = hover(&f.db, f.ws, tests, f.at("tests.apt", "test pipelines", 6)).expect("hover");
    assert!(on_test.markdown.contains("Bea gets the pipeline"), "{}", on_test.markdown);
    let component = definition_at(&f.db, f.ws, tests, f.at("tests.apt", "pipeline.app", 10));
    assert_eq!(
        component.iter().map(|d| (d.file, f.text_at(*d))).collect::<Vec<_>>(),
        [(f.id("analytics.apt"), "app".to_string())]
    );
    let label = definition_at(&f.db, f.ws, tests, f.at("tests.apt", "env = \"prod\"", 1));
    assert_eq!(label.iter().map(|d| d.file).collect::<Vec<_>>(), [f.id("platform.apt")]);
}

const ASSERTIONS: &str = r#"namespace analytics

import platform.env

/// Production pipelines stay on the local cluster.
assert prod_local {
    for user "ada@example.com"
    for users in team app_team
    for contract pipeline
    when labels.env == "prod"

    expect placed on system.local
    expect reaches platform.kafka
    expect never shares with team platform_team
    
}
"#;

#[test]
fn assertions_have_references_rename_outline_hover_and_completion() {
    let f = Fixture::new(&[
        ("platform.apt", PLATFORM),
        ("analytics.apt", ANALYTICS),
        ("system.apt", SYSTEM),
        ("assertions.apt", ASSERTIONS),
    ]);
    assert_eq!(f.errors(), Vec::<String>::new());
    // The contract `platform.kafka`: its declaration, the `uses` and the assertion's `reaches`.
    let kafka = references(&f.db, f.ws, f.file("platform.apt"), f.at("platform.apt", "contract kafka", 9), true);
    assert!(kafka.iter().any(|r| r.file == f.id("assertions.apt")), "{kafka:?}");
    // Renaming the cluster reaches `placed on`, and the policy still checks.
    let edits = rename(&f.db, f.ws, f.file("system.apt"), f.at("system.apt", "cluster local", 8), "home").unwrap();
    assert!(edits.iter().any(|e| e.file == f.id("assertions.apt")), "{edits:?}");
    let files = f.edited(&edits);
    let refs: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    assert_eq!(Fixture::new(&refs).errors(), Vec::<String>::new());
    // The team in `for users in team` is a reference too.
    let team = references(&f.db, f.ws, f.file("system.apt"), f.at("system.apt", "team app_team", 5), false);
    assert!(team.iter().any(|r| r.file == f.id("assertions.apt")), "{team:?}");
    // Outline, hover and completion.
    let symbols = document_symbols(&f.db, f.file("assertions.apt"));
    assert!(symbols.iter().any(|s| s.name == "prod_local" && s.kind == SymbolKind::Assert), "{symbols:?}");
    let keyword = hover(&f.db, f.ws, f.file("assertions.apt"), f.at("assertions.apt", "assert prod", 1)).unwrap();
    assert!(keyword.markdown.contains("every possible claim"), "{}", keyword.markdown);
    let named = hover(&f.db, f.ws, f.file("assertions.apt"), f.at("assertions.apt", "prod_local", 2)).unwrap();
    assert!(named.markdown.contains("Production pipelines stay"), "{}", named.markdown);
    let statement = f.complete("assertions.apt", "    \n}", 4);
    assert_eq!(statement, ["for", "when", "expect"]);
}

#[test]
fn kubeconfig_sources_are_completed_explained_and_highlighted() {
    let text = "namespace system\n\ncluster prod {\n    kubeconfig secret \"prod\" key \"config\"\n}\n\n\
cluster home {\n    kubeconfig in_cluster\n}\n\ncluster typing {\n    kubeconfig \n}\n\ncluster keyless {\n    kubeconfig secret \"x\" \n}\n";
    let f = Fixture::new(&[("system.apt", text)]);
    let after = f.complete("system.apt", "kubeconfig \n", 11);
    assert_eq!(after, ["secret", "in_cluster"]);
    assert_eq!(f.complete("system.apt", "secret \"x\" \n", 11), ["key"]);
    let shown = |needle: &str, delta: u32| {
        hover(&f.db, f.ws, f.file("system.apt"), f.at("system.apt", needle, delta))
            .map(|h| h.markdown)
            .unwrap_or_default()
    };
    assert!(shown("secret \"prod\"", 1).contains("Secret in the home namespace"), "{}", shown("secret \"prod\"", 1));
    assert!(shown("key \"config\"", 1).contains("The key of the Secret"));
    assert!(shown("in_cluster", 1).contains("The home cluster itself"));
    let tokens = semantic_tokens(&f.db, f.ws, f.file("system.apt"));
    let kind_at = |needle: &str| {
        let offset = f.at("system.apt", needle, 1);
        tokens.iter().find(|t| t.span.start <= offset && offset < t.span.end).map(|t| t.kind)
    };
    for word in ["secret \"prod\"", "key \"config\"", "in_cluster"] {
        assert_eq!(kind_at(word), Some(TokenKind::Keyword), "{word}");
    }
}
