//! Deeply nested input (a million levels of `not not …` and `[[[…]]]`, on one line) in an open
//! document must not take the server down: every request answers (with a result or an error),
//! and the server still serves the next file.

mod common;

use aptc_lsp::Options;
use common::*;
use serde_json::json;

const DEPTH: usize = 1_000_000;

fn deep_policy() -> String {
    let nots = "not ".repeat(DEPTH);
    let list = format!("{}1{}", "[".repeat(DEPTH), "]".repeat(DEPTH));
    format!(
        "namespace deep\n\nservice s {{\n    component web chart \"./c\" {{\n        values {{ x = {list} }}\n    }}\n}}\n\n\
contract s {{\n    context a when {nots}true {{\n        use s\n    }}\n}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_does_not_take_the_server_down() {
    let root = repo().join("examples/quickstart");
    let deep = root.join("deep-nesting-test.apt");
    let mut client = TestClient::start(Options::default());
    client.initialize(&root).await;
    client.open(&deep, &deep_policy()).await;
    let document = json!({ "textDocument": { "uri": uri(&deep) } });
    for method in [
        "textDocument/documentSymbol",
        "textDocument/semanticTokens/full",
        "textDocument/foldingRange",
        "textDocument/diagnostic",
    ] {
        let answer = client.request(method, document.clone()).await;
        assert!(answer.get("result").is_some() || answer.get("error").is_some(), "{method}: {answer}");
    }
    let line = 4;
    for method in ["textDocument/hover", "textDocument/definition", "textDocument/completion"] {
        let answer = client.request(method, at(&deep, line, 30)).await;
        assert!(answer.get("result").is_some() || answer.get("error").is_some(), "{method}: {answer}");
    }
    let options = json!({ "textDocument": { "uri": uri(&deep) }, "options": { "tabSize": 4, "insertSpaces": true } });
    let formatted = client.request("textDocument/formatting", options).await;
    assert!(formatted.get("result").is_some() || formatted.get("error").is_some(), "{formatted}");
    client.diagnostics(&deep, |_| true).await;
    // Still serving: another file answers as usual.
    let hello = root.join("hello.apt");
    client.open_from_disk(&hello).await;
    let symbols = client.call("textDocument/documentSymbol", json!({ "textDocument": { "uri": uri(&hello) } })).await;
    assert!(!symbols.as_array().unwrap().is_empty());
    client.shutdown().await;
}
