//! The workspace is the policy, not the folder (issue #13, point 6): each directory holding an
//! `aptc.toml` is a policy checked on its own, its `include`/`exclude` globs say which files
//! belong to it, and an `aptc.toml` created on disk splits the workspace.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aptc_lsp::Options;
use common::*;
use serde_json::{Value, json};

const APP: &str = "namespace app\n\nservice app {\n    component web chart \"./c\" {}\n}\n";
/// Uses `app.app`: known where `APP` is in the same policy, unknown elsewhere.
const USES: &str = "namespace shop\n\ncontract shop {\n    context all {\n        use app.app\n    }\n}\n";
const UNKNOWN: &str = "there is no namespace `app`";

fn folder(name: &str, files: &[(&str, &str)]) -> PathBuf {
    let root = repo().join(format!("target/lsp-tests/{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    std::fs::canonicalize(root).unwrap()
}

fn messages(diagnostics: &[Value]) -> Vec<String> {
    diagnostics.iter().map(|d| d["message"].as_str().unwrap_or_default().to_string()).collect()
}

fn says_unknown(diagnostics: &[Value]) -> bool {
    messages(diagnostics).iter().any(|m| m.contains(UNKNOWN))
}

fn published_for(path: &Path) -> impl Fn(&Value) -> bool {
    let wanted = uri(path);
    move |m: &Value| {
        m["method"] == "textDocument/publishDiagnostics"
            && m["params"]["uri"] == wanted.as_str()
            && m["params"]["diagnostics"].as_array().is_some_and(|d| !d.is_empty())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_aptc_toml_is_a_policy_checked_on_its_own_and_excludes_are_honoured() {
    let root = folder(
        "policies",
        &[
            ("a/aptc.toml", "exclude = [\"generated\"]\n"),
            ("a/app.apt", APP),
            ("a/uses.apt", USES),
            ("a/generated/broken.apt", "namespace gen\n\nservice {\n"),
            ("b/aptc.toml", ""),
            ("b/uses.apt", USES),
            ("loose/broken.apt", "namespace loose\n\nservice {\n"),
        ],
    );
    let mut client = TestClient::start(Options::default());
    client.initialize(&root).await;
    // In b, `app` is unknown: a's files are another policy.
    let in_b = client.diagnostics(&root.join("b/uses.apt"), say_unknown_or_not(true)).await;
    assert!(says_unknown(&in_b), "{in_b:?}");
    // Files outside any aptc.toml are checked as before.
    client.diagnostics(&root.join("loose/broken.apt"), |d| !d.is_empty()).await;
    // In a, `app` is known; its excluded file gets no diagnostics.
    client.open_from_disk(&root.join("a/uses.apt")).await;
    let in_a = client.diagnostics(&root.join("a/uses.apt"), |_| true).await;
    assert!(!says_unknown(&in_a), "{in_a:?}");
    assert!(
        !client.receives_within(Duration::from_secs(1), published_for(&root.join("a/generated/broken.apt"))).await,
        "an excluded file has no diagnostics"
    );

    // Definition, references and rename stay within the policy: `app.app` in a goes to a's
    // service; rename there changes no file of b.
    let a_uses = root.join("a/uses.apt");
    let (line, character) = find(USES, "app.app", 5);
    let definition = client.call("textDocument/definition", at(&a_uses, line, character)).await;
    assert_eq!(definition["uri"], uri(&root.join("a/app.apt")), "{definition}");
    let mut params = at(&a_uses, line, character);
    params["newName"] = json!("api");
    let edit = client.call("textDocument/rename", params).await;
    let changed: Vec<&String> = edit["changes"].as_object().unwrap().keys().collect();
    assert!(changed.iter().all(|u| !u.contains("/b/")), "{changed:?}");
    client.shutdown().await;
}

fn say_unknown_or_not(unknown: bool) -> impl Fn(&Vec<Value>) -> bool {
    move |d| says_unknown(d) == unknown
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aptc_toml_created_on_disk_splits_the_workspace() {
    let root = folder("split", &[("one/app.apt", APP), ("two/uses.apt", USES)]);
    let uses = root.join("two/uses.apt");
    let mut client = TestClient::start(Options::default());
    client
        .initialize_with(&root, json!({ "workspace": { "didChangeWatchedFiles": { "dynamicRegistration": true } } }))
        .await;
    client.open_from_disk(&uses).await;
    // One policy: `app` is known.
    let before = client.diagnostics(&uses, |_| true).await;
    assert!(!says_unknown(&before), "{before:?}");
    // two/ becomes a policy of its own: `app` is unknown there now.
    let toml = root.join("two/aptc.toml");
    std::fs::write(&toml, "").unwrap();
    client.notify("workspace/didChangeWatchedFiles", json!({ "changes": [{ "uri": uri(&toml), "type": 1 }] })).await;
    client.diagnostics(&uses, say_unknown_or_not(true)).await;
    // And deleted again, one policy again.
    std::fs::remove_file(&toml).unwrap();
    client.notify("workspace/didChangeWatchedFiles", json!({ "changes": [{ "uri": uri(&toml), "type": 3 }] })).await;
    client.diagnostics(&uses, say_unknown_or_not(false)).await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_this_repository_checks_the_examples_not_the_test_cases() {
    let mut client = TestClient::start(Options::default());
    client.initialize(&repo()).await;
    let from_cases = |m: &Value| {
        m["method"] == "textDocument/publishDiagnostics"
            && m["params"]["uri"].as_str().is_some_and(|u| u.contains("/tests/cases/") || u.contains("/stdlib/"))
    };
    assert!(!client.receives_within(Duration::from_secs(2), from_cases).await, "the root aptc.toml excludes them");
    // The examples are policies of their own, each clean.
    let quickstart = repo().join("examples/quickstart/hello.apt");
    client.open_from_disk(&quickstart).await;
    let found = client.diagnostics(&quickstart, |_| true).await;
    assert!(found.is_empty(), "{found:?}");
    client.shutdown().await;
}

/// A broken `aptc.toml` is an error on that file (its policy takes every file under it
/// meanwhile); fixed on disk, the error goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_aptc_toml_is_an_error_on_that_file_until_it_is_fixed() {
    let root = folder("broken-toml", &[("app.apt", APP), ("aptc.toml", "include = [\n")]);
    let toml = root.join("aptc.toml");
    let mut client = TestClient::start(Options::default());
    client
        .initialize_with(&root, json!({ "workspace": { "didChangeWatchedFiles": { "dynamicRegistration": true } } }))
        .await;
    client.open_from_disk(&root.join("app.apt")).await;
    let broken = client.diagnostics(&toml, |found| !found.is_empty()).await;
    let shown = messages(&broken);
    assert!(shown.iter().any(|m| m.contains("aptc.toml") && m.contains("takes every .apt file")), "{shown:?}");
    std::fs::write(&toml, "").unwrap();
    client.notify("workspace/didChangeWatchedFiles", json!({ "changes": [{ "uri": uri(&toml), "type": 2 }] })).await;
    client.diagnostics(&toml, |found| found.is_empty()).await;
    client.shutdown().await;
}
