//! Diagnostics are published only for files whose diagnostics changed, and clients that pull
//! them (`textDocument/diagnostic`, LSP 3.17) get them by pulling.

mod common;

use std::path::Path;
use std::time::Duration;

use aptc_lsp::Options;
use common::*;
use serde_json::{Value, json};

/// Longer than the debounce and a diagnostics run on the example.
const QUIET: Duration = Duration::from_millis(1500);

fn published_for(path: &Path) -> impl Fn(&Value) -> bool {
    let wanted = uri(path);
    move |m: &Value| m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == wanted.as_str()
}

async fn edit(client: &mut TestClient, path: &Path, version: i32, text: &str) {
    let params =
        json!({ "textDocument": { "uri": uri(path), "version": version }, "contentChanges": [{ "text": text }] });
    client.notify("textDocument/didChange", params).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_files_whose_diagnostics_changed_are_published() {
    let root = repo().join("examples/quickstart");
    let hello = root.join("hello.apt");
    let mut client = TestClient::start(Options::default());
    client.initialize(&root).await;
    let text = client.open_from_disk(&hello).await;
    client.diagnostics(&hello, |d| d.is_empty()).await;

    // A new document with an error: published for it, not again for hello.apt.
    let other = root.join("other-diagnostics-test.apt");
    client.open(&other, "namespace other\n\nservice s {\n    componet web chart \"./c\" {}\n}\n").await;
    client.diagnostics(&other, |d| !d.is_empty()).await;
    assert!(!client.receives_within(QUIET, published_for(&hello)).await, "hello.apt did not change");

    // An edit that changes nothing a diagnostic says: nothing published.
    edit(&mut client, &hello, 2, &format!("{text}\n")).await;
    assert!(!client.receives_within(QUIET, published_for(&hello)).await, "hello.apt's diagnostics did not change");
    assert!(!client.receives_within(Duration::ZERO, published_for(&other)).await, "nor did the other's");

    // An edit that breaks it: published.
    edit(&mut client, &hello, 3, &format!("{text}\nservice {{\n")).await;
    client.diagnostics(&hello, |d| !d.is_empty()).await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_pull_diagnostics_get_them_by_pulling() {
    let root = repo().join("examples/quickstart");
    let mut client = TestClient::start(Options::default());
    let capabilities = json!({ "textDocument": { "diagnostic": { "dynamicRegistration": false } } });
    let result = client.initialize_with(&root, capabilities).await;
    assert_eq!(result["capabilities"]["diagnosticProvider"]["interFileDependencies"], true, "{result}");

    let broken = root.join("pulled-diagnostics-test.apt");
    client.open(&broken, "namespace pulled\n\nservice s {\n    componet web chart \"./c\" {}\n}\n").await;
    let document = json!({ "textDocument": { "uri": uri(&broken) } });
    let report = client.call("textDocument/diagnostic", document.clone()).await;
    assert_eq!(report["kind"], "full", "{report}");
    assert_eq!(report["items"][0]["code"], "APT0004", "{report}");
    let id = report["resultId"].clone();

    let mut again = document.clone();
    again["previousResultId"] = id;
    let report = client.call("textDocument/diagnostic", again).await;
    assert_eq!(report["kind"], "unchanged", "{report}");
    assert!(!client.receives_within(QUIET, published_for(&broken)).await, "an open document's are pulled, not pushed");
    client.shutdown().await;
}

/// The first `publishDiagnostics` of `paths`, by the order they arrive.
async fn first_published(client: &mut TestClient, paths: &[&Path]) -> Value {
    let uris: Vec<String> = paths.iter().map(|path| uri(path)).collect();
    client
        .next_message("diagnostics", |m| {
            m["method"] == "textDocument/publishDiagnostics"
                && uris.iter().any(|uri| m["params"]["uri"] == uri.as_str())
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edited_document_is_published_before_the_rest_of_the_workspace() {
    let root = repo().join("examples/quickstart");
    let (hello, tests) = (root.join("hello.apt"), root.join("tests.apt"));
    let mut client = TestClient::start(Options::default());
    client.initialize(&root).await;
    let text = client.open_from_disk(&hello).await;
    client.diagnostics(&hello, |d| d.is_empty()).await;

    // A syntax error in hello.apt, and its contract renamed, which tests.apt names.
    let broken = format!("{}\nservice {{\n", text.replace("contract hello {", "contract renamed {"));
    edit(&mut client, &hello, 2, &broken).await;
    let first = first_published(&mut client, &[&hello, &tests]).await;
    assert_eq!(first["params"]["uri"], uri(&hello).as_str(), "the edited document comes first: {first}");
    assert_eq!(first["params"]["version"], 2, "{first}");
    assert!(!first["params"]["diagnostics"].as_array().unwrap().is_empty(), "{first}");
    client.diagnostics(&tests, |d| !d.is_empty()).await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_policy_diagnostics_of_the_edited_document_move_with_the_edit() {
    let root = repo().join("examples/quickstart");
    let duplicate = root.join("duplicate-label-test.apt");
    let mut client = TestClient::start(Options::default());
    client.initialize(&root).await;
    // A label that hello.apt declares too: a whole-policy check (duplicates) reports it.
    client.open(&duplicate, "namespace hello\n\nlabel env: string\n").await;
    let found = client.diagnostics(&duplicate, |d| d.iter().any(|d| d["code"] == "APT0202")).await;
    let start = found.iter().find(|d| d["code"] == "APT0202").unwrap()["range"]["start"].clone();

    // Two spaces typed at the start of its line: the first pass, which checks only this
    // document, shows the duplicate where the name now is.
    let at =
        json!({ "start": { "line": start["line"], "character": 0 }, "end": { "line": start["line"], "character": 0 } });
    let params = json!({
        "textDocument": { "uri": uri(&duplicate), "version": 2 },
        "contentChanges": [{ "range": at, "text": "  " }],
    });
    client.notify("textDocument/didChange", params).await;
    let first = first_published(&mut client, &[&duplicate]).await;
    assert_eq!(first["params"]["version"], 2, "{first}");
    let moved = first["params"]["diagnostics"].as_array().unwrap().iter().find(|d| d["code"] == "APT0202").cloned();
    let moved = moved.unwrap_or_else(|| panic!("the duplicate is still shown: {first}"));
    assert_eq!(moved["range"]["start"]["character"], start["character"].as_u64().unwrap() + 2, "{moved}");
    let again = |m: &Value| published_for(&duplicate)(m) && m["params"]["version"] == 2;
    assert!(!client.receives_within(QUIET, again).await, "the workspace pass agrees");
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saving_verifies_the_assertions_and_shows_each_at_its_name() {
    let root = repo().join("examples/guestbook");
    let assertions = root.join("assertions.apt");
    let mut client = TestClient::start(Options::default());
    client.initialize(&root).await;
    let text = client.open_from_disk(&assertions).await;
    client.diagnostics(&assertions, |d| d.is_empty()).await;

    // One false assertion: every production claim shares the one production guestbook.
    let text = format!(
        "{text}\nassert production_is_private {{\n    when labels.env == \"prod\"\n\n    expect never shares with others\n}}\n"
    );
    edit(&mut client, &assertions, 2, &text).await;
    let saved = json!({ "textDocument": { "uri": uri(&assertions) } });
    client.notify("textDocument/didSave", saved.clone()).await;
    let shown = client.diagnostics(&assertions, |d| d.iter().any(|d| d["code"] == "APT0601")).await;
    let violated: Vec<&Value> = shown.iter().filter(|d| d["code"] == "APT0601").collect();
    assert_eq!(violated.len(), 1, "{shown:#?}");
    let (line, character) = find(&text, "production_is_private {", 0);
    assert_eq!(violated[0]["range"]["start"], position(line, character), "{shown:#?}");
    assert_eq!(violated[0]["severity"], 1);
    let message = violated[0]["message"].as_str().unwrap();
    assert!(message.contains("`expect never shares with others` does not hold"), "{message}");
    // The counterexample and the broken expectation come along.
    assert!(shown.iter().any(|d| d.to_string().contains("claim production_is_private_counterexample")), "{shown:#?}");
    // The four assertions of the example are proved: a hint each, at its name.
    let hints: Vec<&Value> = shown.iter().filter(|d| d["severity"] == 4).collect();
    assert_eq!(hints.len(), 4, "{shown:#?}");
    let (line, character) = find(&text, "developers_stay_private", 0);
    assert!(
        hints.iter().any(|h| h["range"]["start"] == position(line, character)
            && h["message"]
                .as_str()
                .unwrap()
                .starts_with("assertion `guestbook.developers_stay_private` is proved over")),
        "{hints:#?}"
    );

    // An edit: the results were about the saved text, and go.
    edit(&mut client, &assertions, 3, &format!("{text}\n")).await;
    client.diagnostics(&assertions, |d| d.is_empty()).await;
    // Saved again: back.
    client.notify("textDocument/didSave", saved).await;
    client.diagnostics(&assertions, |d| d.iter().any(|d| d["code"] == "APT0601")).await;
    client.shutdown().await;
}
