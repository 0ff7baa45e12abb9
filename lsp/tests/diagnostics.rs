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
