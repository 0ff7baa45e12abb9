//! The language server over its protocol, on the flagship example: every feature answers
//! with real results.

mod common;

use std::path::PathBuf;

use aptc_lsp::Options;
use common::*;
use serde_json::{Value, json};

fn example() -> PathBuf {
    repo().join("examples/twitter-analytics")
}

fn labels(items: &Value) -> Vec<String> {
    items.as_array().expect("a list").iter().map(|i| i["label"].as_str().unwrap_or_default().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initialize_announces_every_feature() {
    let mut client = TestClient::start(Options::default());
    let result = client.initialize(&example()).await;
    let capabilities = &result["capabilities"];
    assert_eq!(capabilities["textDocumentSync"]["change"], 2, "incremental sync");
    for feature in [
        "completionProvider",
        "hoverProvider",
        "signatureHelpProvider",
        "definitionProvider",
        "referencesProvider",
        "renameProvider",
        "documentSymbolProvider",
        "workspaceSymbolProvider",
        "documentFormattingProvider",
        "semanticTokensProvider",
        "foldingRangeProvider",
        "codeActionProvider",
        "inlayHintProvider",
    ] {
        assert!(!capabilities[feature].is_null(), "{feature} missing: {capabilities}");
    }
    assert_eq!(result["serverInfo"]["name"], "aptc");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn navigation_hover_and_completion_on_the_example() {
    let mut client = TestClient::start(Options::default());
    client.initialize(&example()).await;
    let pipeline = example().join("analytics/pipeline.apt");
    let text = client.open_from_disk(&pipeline).await;
    let diagnostics = client.diagnostics(&pipeline, |_| true).await;
    assert!(diagnostics.is_empty(), "the example is clean: {diagnostics:?}");

    // `component kafka uses kafka`: the contract platform.kafka, in platform/kafka.apt line 30.
    let (line, character) = find(&text, "uses kafka", 6);
    let definition = client.call("textDocument/definition", at(&pipeline, line, character)).await;
    assert_eq!(definition["uri"], uri(&example().join("platform/kafka.apt")));
    assert_eq!(definition["range"]["start"], json!({ "line": 29, "character": 9 }));
    assert_eq!(definition["range"]["end"], json!({ "line": 29, "character": 14 }));

    // A qualified reference in another namespace: `uses analytics.pipeline`.
    let stats = example().join("social/twitter_stats.apt");
    let stats_text = client.open_from_disk(&stats).await;
    let (line, character) = find(&stats_text, "uses analytics.pipeline", 16);
    let definition = client.call("textDocument/definition", at(&stats, line, character)).await;
    assert_eq!(definition["uri"], uri(&pipeline));
    assert_eq!(definition["range"]["start"]["line"], 44);

    // Hover: the declaration, its doc comment, what it resolved to.
    let (line, character) = find(&text, "uses kafka", 6);
    let hover = client.call("textDocument/hover", at(&pipeline, line, character)).await;
    let shown = hover["contents"]["value"].as_str().unwrap();
    assert!(shown.contains("contract kafka"), "{shown}");
    assert!(shown.contains("contract `platform.kafka`"), "{shown}");
    assert!(shown.contains("A message bus for streams of events."), "{shown}");
    let (line, character) = find(&text, "per labels.env", 12);
    let hover = client.call("textDocument/hover", at(&pipeline, line, character)).await;
    let shown = hover["contents"]["value"].as_str().unwrap();
    assert!(shown.contains(r#"type `"dev" | "stage" | "prod"`"#), "{shown}");

    // References of the label `env`, declared in system: many files use it.
    let references = client
        .call(
            "textDocument/references",
            json!({
                "textDocument": { "uri": uri(&pipeline) },
                "position": position(line, character),
                "context": { "includeDeclaration": true },
            }),
        )
        .await;
    let references = references.as_array().unwrap();
    let files: std::collections::BTreeSet<&str> = references.iter().map(|r| r["uri"].as_str().unwrap()).collect();
    assert!(references.len() >= 10 && files.len() >= 5, "{references:?}");
    assert!(files.contains(uri(&example().join("system/system.apt")).as_str()));

    // Completion: a discovery key inside an interpolation.
    let (line, character) = find(&text, "${kafka.discovery.brokers}", 25);
    let items = client.call("textDocument/completion", at(&pipeline, line, character)).await;
    // What the contract's services publish, and what the component re-exports itself.
    assert_eq!(labels(&items), ["brokers", "kafka_brokers"]);
    let item = &items[0];
    // The word before the cursor is replaced.
    assert_eq!(item["textEdit"]["range"]["start"]["character"], character - 7);
    assert_eq!(item["textEdit"]["range"]["end"]["character"], character);
    // Contracts across namespaces after `uses`.
    let (line, character) = find(&stats_text, "uses analytics.pipeline", 5);
    let items = client.call("textDocument/completion", at(&stats, line, character)).await;
    let found = labels(&items);
    assert!(found.contains(&"analytics.pipeline".to_string()) && found.contains(&"platform.kafka".to_string()));
    let kafka = items.as_array().unwrap().iter().find(|i| i["label"] == "platform.kafka").unwrap();
    assert_eq!(kafka["kind"], 8, "an interface (contract)");
    // Label keys with their types after `labels.`.
    let (line, character) = find(&stats_text, "labels.message_stream", 7);
    let items = client.call("textDocument/completion", at(&stats, line, character)).await;
    let env = items.as_array().unwrap().iter().find(|i| i["label"] == "env").expect("env is visible");
    assert!(env["detail"].as_str().unwrap().contains(r#""dev" | "stage" | "prod""#));

    // Signature help inside a standard-library call, and hover on a built-in field.
    let (line, character) = find(&stats_text, "lower(user.name)", 6);
    let help = client.call("textDocument/signatureHelp", at(&stats, line, character)).await;
    assert_eq!(help["signatures"][0]["label"], "lower(s: string) -> string", "{help}");
    assert_eq!(help["signatures"][0]["parameters"][0]["label"], json!([6, 15]), "{help}");
    assert_eq!(help["activeParameter"], 0);
    let hover = client.call("textDocument/hover", at(&stats, line, character + 6)).await;
    let shown = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(shown.contains("user.name: string"), "{hover}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_symbols_formatting_tokens_folding_hints() {
    let mut client = TestClient::start(Options::default());
    client.initialize(&example()).await;
    let kafka = example().join("platform/kafka.apt");
    let text = client.open_from_disk(&kafka).await;

    // Rename the contract: its declaration, and the import and `uses` in analytics.
    let (line, character) = find(&text, "contract kafka", 10);
    let prepared = client.call("textDocument/prepareRename", at(&kafka, line, character)).await;
    assert_eq!(prepared["start"], json!({ "line": line, "character": 9 }));
    let mut params = at(&kafka, line, character);
    params["newName"] = json!("bus");
    let edit = client.call("textDocument/rename", params.clone()).await;
    let changes = edit["changes"].as_object().unwrap();
    assert_eq!(changes[&uri(&kafka)].as_array().unwrap().len(), 1);
    let in_pipeline = changes[&uri(&example().join("analytics/pipeline.apt"))].as_array().unwrap();
    assert_eq!(in_pipeline.len(), 2, "the import and the `uses`: {in_pipeline:?}");
    assert!(in_pipeline.iter().all(|e| e["newText"] == "bus"));
    params["newName"] = json!("not valid");
    let refused = client.request("textDocument/rename", params).await;
    assert!(refused["error"]["message"].as_str().unwrap().contains("not a valid name"), "{refused}");

    // The outline, and symbols across the workspace.
    let document = json!({ "textDocument": { "uri": uri(&kafka) } });
    let symbols = client.call("textDocument/documentSymbol", document.clone()).await;
    let names = labels_of(&symbols, "name");
    assert_eq!(names, ["platform", "kafka", "kafka"]);
    assert_eq!(labels_of(&symbols[1]["children"], "name"), ["zookeeper", "broker"]);
    let found = client.call("workspace/symbol", json!({ "query": "twitter" })).await;
    assert!(labels_of(&found, "name").contains(&"twitter_stats".to_string()), "{found}");

    // Formatting: the example is formatted already; a messy document is not.
    assert_eq!(
        client
            .call(
                "textDocument/formatting",
                json!({ "textDocument": { "uri": uri(&kafka) }, "options": { "tabSize": 4, "insertSpaces": true } })
            )
            .await,
        json!([])
    );
    let messy = repo().join("target/lsp-tests/messy.apt");
    client.open(&messy, "namespace messy\nlabel x:int=1;\n").await;
    let edits = client
        .call(
            "textDocument/formatting",
            json!({ "textDocument": { "uri": uri(&messy) }, "options": { "tabSize": 4, "insertSpaces": true } }),
        )
        .await;
    assert_eq!(edits[0]["newText"], "namespace messy\nlabel x: int = 1\n");

    // Semantic tokens: five numbers a token, the contract's name a declaration.
    let tokens = client.call("textDocument/semanticTokens/full", document.clone()).await;
    let data = tokens["data"].as_array().unwrap();
    assert!(!data.is_empty() && data.len() % 5 == 0);
    let decoded = decode(data);
    let (line, character) = find(&text, "contract kafka", 9);
    let name = decoded.iter().find(|t| (t.0, t.1) == (line, character)).expect("a token for the contract's name");
    assert_eq!((name.2, name.3, name.4), (5, 8, 1), "interface, declaration");

    // Folding: the service's block.
    let folds = client.call("textDocument/foldingRange", document.clone()).await;
    let (service_line, _) = find(&text, "service kafka {", 0);
    assert!(folds.as_array().unwrap().iter().any(|f| f["startLine"] == service_line), "{folds}");

    // Inlay hints: the type of a label where a claim sets it.
    let claims = example().join("social/claims.apt");
    let claims_text = client.open_from_disk(&claims).await;
    let hints = client
        .call(
            "textDocument/inlayHint",
            json!({ "textDocument": { "uri": uri(&claims) }, "range": { "start": position(0, 0), "end": position(99, 0) } }),
        )
        .await;
    let (line, character) = find(&claims_text, "env = \"dev\"", 3);
    let hint = hints.as_array().unwrap().iter().find(|h| h["position"] == position(line, character)).expect("a hint");
    assert_eq!(hint["label"], r#": "dev" | "stage" | "prod""#);
    client.shutdown().await;
}

fn labels_of(list: &Value, field: &str) -> Vec<String> {
    list.as_array().expect("a list").iter().map(|i| i[field].as_str().unwrap_or_default().to_string()).collect()
}

/// (line, character, length, type, modifiers) of each encoded token.
fn decode(data: &[Value]) -> Vec<(u32, u32, u32, u32, u32)> {
    let numbers: Vec<u32> = data.iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let (mut line, mut character) = (0, 0);
    numbers
        .chunks(5)
        .map(|t| {
            if t[0] > 0 {
                character = 0;
            }
            line += t[0];
            character += t[1];
            (line, character, t[2], t[3], t[4])
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_follow_edits_and_quick_fixes_repair_them() {
    let mut client = TestClient::start(Options::default());
    client.initialize(&example()).await;
    let claims = example().join("social/claims.apt");
    let text = client.open_from_disk(&claims).await;
    client.diagnostics(&claims, |d| d.is_empty()).await;

    // Misspell the contract of the first claim, with an incremental change.
    let (line, character) = find(&text, "contract twitter_stats", 9);
    let change = json!({
        "textDocument": { "uri": uri(&claims), "version": 2 },
        "contentChanges": [{ "range": { "start": position(line, character), "end": position(line, character + 13) }, "text": "twiter_stats" }],
    });
    client.notify("textDocument/didChange", change).await;
    let diagnostics = client.diagnostics(&claims, |d| !d.is_empty()).await;
    let unresolved = diagnostics.iter().find(|d| d["code"] == "APT0201").expect("an unresolved name");
    assert_eq!(unresolved["severity"], 1);
    assert_eq!(unresolved["source"], "aptc");
    assert_eq!(unresolved["range"]["start"], position(line, character));
    let message = unresolved["message"].as_str().unwrap();
    assert!(message.contains("help: did you mean `twitter_stats`?"), "{message}");
    assert_eq!(unresolved["relatedInformation"][0]["message"], "unknown contract");

    // The quick fix puts the name back.
    let actions = client
        .call(
            "textDocument/codeAction",
            json!({
                "textDocument": { "uri": uri(&claims) },
                "range": { "start": position(line, character), "end": position(line, character) },
                "context": { "diagnostics": [] },
            }),
        )
        .await;
    let fix = actions
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["title"] == "Replace `twiter_stats` with `twitter_stats`")
        .expect("a fix");
    assert_eq!(fix["kind"], "quickfix");
    assert_eq!(fix["isPreferred"], true);
    let edit = &fix["edit"]["changes"][uri(&claims)][0];
    assert_eq!(edit["newText"], "twitter_stats");

    // Apply it as a full-text change: the diagnostics are cleared.
    client
        .notify(
            "textDocument/didChange",
            json!({ "textDocument": { "uri": uri(&claims), "version": 3 }, "contentChanges": [{ "text": text }] }),
        )
        .await;
    let cleared = client.diagnostics(&claims, |d| d.is_empty()).await;
    assert!(cleared.is_empty());
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_answers_on_a_file_with_syntax_errors() {
    let mut client = TestClient::start(Options::default());
    client.initialize(&example()).await;
    let broken = repo().join("target/lsp-tests/broken.apt");
    let text = "namespace social\n\nimport system\n\nservice s {\n    componet x chart \"c\" {\n        values { a = labels. }\n\ncontract s {\n    context c when labels.env == {\n        use s\n";
    client.open(&broken, text).await;
    let diagnostics = client.diagnostics(&broken, |d| !d.is_empty()).await;
    assert!(diagnostics.iter().any(|d| d["code"] == "APT0004"), "{diagnostics:?}");
    let document = json!({ "textDocument": { "uri": uri(&broken) } });
    let everything = json!({ "start": position(0, 0), "end": position(20, 0) });
    let mut with_range = document.clone();
    with_range["range"] = everything.clone();
    let mut with_context = with_range.clone();
    with_context["context"] = json!({ "diagnostics": [] });
    let lines: Vec<&str> = text.lines().collect();
    for (line, content) in lines.iter().enumerate() {
        for character in 0..=content.len() as u32 {
            let here = at(&broken, line as u32, character);
            for method in ["textDocument/completion", "textDocument/hover", "textDocument/definition"] {
                let response = client.request(method, here.clone()).await;
                assert!(response.get("error").is_none(), "{method} at {line}:{character}: {response}");
            }
        }
    }
    let (line, character) = find(text, "labels.env", 7);
    let items = client.call("textDocument/completion", at(&broken, line, character)).await;
    assert!(labels(&items).contains(&"env".to_string()));
    let (line, character) = find(text, "labels. }", 7);
    let items = client.call("textDocument/completion", at(&broken, line, character)).await;
    assert!(labels(&items).contains(&"env".to_string()), "completion inside a broken block: {items}");
    for (method, params) in [
        ("textDocument/documentSymbol", document.clone()),
        ("textDocument/semanticTokens/full", document.clone()),
        ("textDocument/foldingRange", document.clone()),
        (
            "textDocument/formatting",
            json!({ "textDocument": { "uri": uri(&broken) }, "options": { "tabSize": 4, "insertSpaces": true } }),
        ),
        ("textDocument/inlayHint", with_range.clone()),
        ("textDocument/codeAction", with_context.clone()),
        ("workspace/symbol", json!({ "query": "s" })),
    ] {
        let response = client.request(method, params).await;
        assert!(response.get("error").is_none(), "{method}: {response}");
    }
    let (line, character) = find(text, "componet", 2);
    let actions = client
        .call(
            "textDocument/codeAction",
            json!({ "textDocument": { "uri": uri(&broken) }, "range": { "start": position(line, character), "end": position(line, character) }, "context": { "diagnostics": [] } }),
        )
        .await;
    assert!(labels_of(&actions, "title").contains(&"Replace `componet` with `component`".to_string()), "{actions}");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_request_is_answered_and_the_server_goes_on() {
    let mut client = TestClient::start(Options { panic_in: Some("textDocument/hover".into()) });
    client.initialize(&example()).await;
    let kafka = example().join("platform/kafka.apt");
    let text = client.open_from_disk(&kafka).await;
    let (line, character) = find(&text, "contract kafka", 10);
    for _ in 0..3 {
        let response = client.request("textDocument/hover", at(&kafka, line, character)).await;
        assert_eq!(response["error"]["code"], -32603, "{response}");
        assert!(response["error"]["message"].as_str().unwrap().contains("server goes on"));
        let definition = client.call("textDocument/definition", at(&kafka, line, character)).await;
        assert_eq!(definition["range"]["start"]["line"], line);
    }
    client.diagnostics(&kafka, |d| d.is_empty()).await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_templates_are_checked_again_when_they_change_on_disk() {
    let root = repo().join(format!("target/lsp-tests/manifests-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("k8s")).unwrap();
    std::fs::write(
        root.join("system.apt"),
        "namespace system\n\nuser \"ada\"\n\ncluster here {}\n\nrule all {\n    place on here\n}\n",
    )
    .unwrap();
    std::fs::write(
        root.join("app.apt"),
        "namespace app\n\nservice app {\n    component config manifests \"k8s/*.yaml\" {\n        values { greeting = \"hi\" }\n    }\n}\n\n\
contract app {\n    context all {\n        use app\n    }\n}\n\nclaim one {\n    user \"ada\"\n    contract app\n}\n",
    )
    .unwrap();
    let template = |value: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${{instance.name}}\ndata:\n  g: \"${{values.{value}}}\"\n"
        )
    };
    let config = root.join("k8s/config.yaml");
    std::fs::write(&config, template("greting")).unwrap();

    let mut client = TestClient::start(Options::default());
    client.initialize(&root).await;
    let found = client.diagnostics(&config, |d| !d.is_empty()).await;
    assert_eq!(found[0]["code"], "APT0305", "{found:#?}");

    // Fixed on disk: the editor says so (workspace/didChangeWatchedFiles), the error goes.
    std::fs::write(&config, template("greeting")).unwrap();
    let changed = json!({ "changes": [{ "uri": uri(&config), "type": 2 }] });
    client.notify("workspace/didChangeWatchedFiles", changed).await;
    client.diagnostics(&config, |d| d.is_empty()).await;

    // A new template that matches the glob, noticed when a policy file is saved.
    let extra = root.join("k8s/extra.yaml");
    std::fs::write(&extra, template("nope")).unwrap();
    client.open_from_disk(&root.join("app.apt")).await;
    client.notify("textDocument/didSave", json!({ "textDocument": { "uri": uri(&root.join("app.apt")) } })).await;
    let found = client.diagnostics(&extra, |d| !d.is_empty()).await;
    assert_eq!(found[0]["code"], "APT0305", "{found:#?}");
    client.shutdown().await;
    let _ = std::fs::remove_dir_all(&root);
}

/// `test` blocks are part of the policy the editor sees (issue #13.1): the quickstart's
/// tests in the outline, hover inside them, and renames that reach them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_blocks_in_outline_hover_folding_and_rename() {
    let quickstart = repo().join("examples/quickstart");
    let mut client = TestClient::start(Options::default());
    client.initialize(&quickstart).await;
    let tests = quickstart.join("tests.apt");
    let text = client.open_from_disk(&tests).await;
    let document = json!({ "textDocument": { "uri": uri(&tests) } });

    // The outline: the namespace, then each test with its users and claims.
    let symbols = client.call("textDocument/documentSymbol", document.clone()).await;
    assert_eq!(
        labels_of(&symbols, "name"),
        ["hello", "ada_gets_a_private_greeter", "production_is_shared", "developers_do_not_share"]
    );
    assert_eq!(symbols[1]["kind"], json!(6), "a test is a method");
    assert_eq!(labels_of(&symbols[2]["children"], "name"), ["ada_prod"]);
    assert_eq!(labels_of(&symbols[3]["children"], "name"), ["bea@example.com", "bea_dev"]);

    // Hover on the contract a test's claim names, and on a claim of the policy it expects.
    let (line, character) = find(&text, "contract hello", 10);
    let hover = client.call("textDocument/hover", at(&tests, line, character)).await;
    let markdown = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(markdown.contains("contract `hello.hello`") && markdown.contains("hello.apt"), "{hover}");
    let (line, character) = find(&text, "expect claim ada_dev", 14);
    let definition = client.call("textDocument/definition", at(&tests, line, character)).await;
    assert!(definition.to_string().contains("hello.apt"), "{definition}");

    // Folding: each test's block.
    let folds = client.call("textDocument/foldingRange", document.clone()).await;
    let (test_line, _) = find(&text, "test production_is_shared {", 0);
    assert!(folds.as_array().unwrap().iter().any(|f| f["startLine"] == test_line), "{folds}");

    // Renaming the label `env` in hello.apt edits the tests' labels maps too.
    let hello = quickstart.join("hello.apt");
    let hello_text = client.open_from_disk(&hello).await;
    let (line, character) = find(&hello_text, "label env", 7);
    let mut params = at(&hello, line, character);
    params["newName"] = json!("stage");
    let edit = client.call("textDocument/rename", params).await;
    let changes = edit["changes"].as_object().expect("changes");
    let in_tests = changes.get(&uri(&tests)).and_then(Value::as_array).expect("edits of tests.apt");
    assert_eq!(in_tests.len(), 2, "both test claims' `env`: {in_tests:?}");
    assert!(in_tests.iter().all(|e| e["newText"] == "stage"));
    client.shutdown().await;
}
