//! The server never crashes and never hangs: random edits to an open document (insertions
//! and deletions at random places, multi-byte text included), each followed by requests at
//! random positions, some of them sent before the edit they race with. Every request must
//! answer in time, with a result, or with "content modified" (a newer edit cancelled it), or
//! with a refusal of a rename; never with an internal error (a panic in the compiler).
//!
//! `PROPTEST_CASES=N` runs more cases.

mod common;

use aptc_lsp::Options;
use aptc_lsp::convert::apply_change;
use aptc_lsp::ls_types::{Position, Range, TextDocumentContentChangeEvent};
use common::*;
use proptest::prelude::*;
use serde_json::{Value, json};

const CONTENT_MODIFIED: i64 = -32801;
const INVALID_PARAMS: i64 = -32602;

#[derive(Clone, Debug)]
struct Edit {
    line: u32,
    character: u32,
    delete: u32,
    insert: String,
    /// Where the requests after this edit point.
    probes: Vec<(u32, u32)>,
}

fn edit() -> impl Strategy<Value = Edit> {
    let text = prop_oneof![
        "[a-z_ ]{0,8}",
        "[{}\\[\\]()\".=,$\n ]{0,4}",
        Just("labels.".to_string()),
        Just("${".to_string()),
        Just("component x uses ".to_string()),
        Just("é😀\n".to_string()),
        Just("\"".to_string()),
        Just("/*".to_string()),
    ];
    (0u32..40, 0u32..60, 0u32..12, text, proptest::collection::vec((0u32..40, 0u32..60), 1..4))
        .prop_map(|(line, character, delete, insert, probes)| Edit { line, character, delete, insert, probes })
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(16)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn every_request_answers_after_random_edits(edits in proptest::collection::vec(edit(), 1..8)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
        runtime.block_on(run(edits));
    }
}

async fn run(edits: Vec<Edit>) {
    let root = repo().join("examples/quickstart");
    let path = root.join("hello.apt");
    let mut client = TestClient::start(Options::default());
    client.initialize(&root).await;
    let mut text = client.open_from_disk(&path).await;
    let document = json!({ "uri": uri(&path) });
    for (version, edit) in edits.into_iter().enumerate() {
        // Requests sent before the edit race with it.
        let mut pending = Vec::new();
        for &(line, character) in &edit.probes {
            let here = at(&path, line, character);
            pending.push(client.send_request("textDocument/hover", here.clone()).await);
            pending.push(client.send_request("textDocument/completion", here).await);
        }
        let start = Position { line: edit.line, character: edit.character };
        let end = Position { line: edit.line, character: edit.character + edit.delete };
        let change = TextDocumentContentChangeEvent {
            range: Some(Range { start, end }),
            range_length: None,
            text: edit.insert.clone(),
        };
        apply_change(&mut text, &change);
        client
            .notify(
                "textDocument/didChange",
                json!({ "textDocument": { "uri": uri(&path), "version": version + 2 }, "contentChanges": [change] }),
            )
            .await;
        for &(line, character) in &edit.probes {
            let here = at(&path, line, character);
            let mut rename = here.clone();
            rename["newName"] = json!("renamed");
            let mut references = here.clone();
            references["context"] = json!({ "includeDeclaration": true });
            let range = json!({ "start": position(line, 0), "end": position(line + 5, character) });
            for (method, params) in [
                ("textDocument/completion", here.clone()),
                ("textDocument/hover", here.clone()),
                ("textDocument/definition", here.clone()),
                ("textDocument/references", references),
                ("textDocument/documentHighlight", here.clone()),
                ("textDocument/prepareRename", here.clone()),
                ("textDocument/rename", rename),
                (
                    "textDocument/codeAction",
                    json!({ "textDocument": document, "range": range, "context": { "diagnostics": [] } }),
                ),
                ("textDocument/inlayHint", json!({ "textDocument": document, "range": range })),
            ] {
                pending.push(client.send_request(method, params).await);
            }
        }
        for method in ["textDocument/documentSymbol", "textDocument/semanticTokens/full", "textDocument/foldingRange"] {
            pending.push(client.send_request(method, json!({ "textDocument": document })).await);
        }
        pending.push(
            client
                .send_request(
                    "textDocument/formatting",
                    json!({ "textDocument": document, "options": { "tabSize": 4, "insertSpaces": true } }),
                )
                .await,
        );
        pending.push(client.send_request("workspace/symbol", json!({ "query": "he" })).await);
        for request in pending {
            let method = request.method.clone();
            let response = request.answer().await;
            check(&method, &response, &text);
        }
    }
    // The server's text is ours: formatting a document that parses gives what `aptc fmt` would.
    let formatted = client
        .call(
            "textDocument/formatting",
            json!({ "textDocument": document, "options": { "tabSize": 4, "insertSpaces": true } }),
        )
        .await;
    if let Ok(expected) = aptc_compiler::syntax::format::format_source(aptc_compiler::source::FileId(0), &text) {
        let got =
            formatted.as_array().and_then(|edits| edits.first()).map(|e| e["newText"].as_str().unwrap().to_string());
        assert_eq!(got.unwrap_or_else(|| text.clone()), expected);
    }
    client.shutdown().await;
}

fn check(method: &str, response: &Value, text: &str) {
    let Some(error) = response.get("error") else { return };
    let code = error["code"].as_i64().unwrap_or_default();
    let allowed = code == CONTENT_MODIFIED || (code == INVALID_PARAMS && method.contains("ename"));
    assert!(allowed, "{method} failed: {error}\non:\n{text}");
}
