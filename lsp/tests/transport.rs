//! The transport survives bad input: every kind of broken message is answered with the
//! JSON-RPC error it deserves (or skipped, when nothing can be answered), and the server still
//! answers the next normal request. `exit` ends the session with the exit code the protocol
//! asks for.

mod common;

use aptc_lsp::{Ending, Options};
use common::*;
use serde_json::{Value, json};

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;

fn framed(body: &[u8]) -> Vec<u8> {
    let mut frame = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    frame.extend_from_slice(body);
    frame
}

/// A client with a workspace and one open document, to ask `documentSymbol` about.
async fn started() -> (TestClient, std::path::PathBuf) {
    let root = repo().join("examples/quickstart");
    let path = root.join("hello.apt");
    let mut client = TestClient::start(Options::default());
    client.initialize(&root).await;
    client.open_from_disk(&path).await;
    (client, path)
}

async fn still_answers(client: &mut TestClient, path: &std::path::Path, after: &str) {
    let symbols = client.call("textDocument/documentSymbol", json!({ "textDocument": { "uri": uri(path) } })).await;
    assert!(!symbols.as_array().is_none_or(Vec::is_empty), "no symbols after {after}: {symbols}");
}

async fn error_answer(client: &mut TestClient, after: &str, id: Value, code: i64) {
    let what = format!("error {code} (id {id}) for {after}");
    let answer = client.next_message(&what, |m| m.get("method").is_none() && m["id"] == id).await;
    assert_eq!(answer["error"]["code"], code, "{after}: {answer}");
    assert_eq!(answer["jsonrpc"], "2.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_broken_message_is_answered_and_the_server_goes_on() {
    let (mut client, path) = started().await;
    let cases: Vec<(&str, Vec<u8>, Value, i64)> = vec![
        ("truncated JSON", framed(br#"{"jsonrpc":"2.0","id":1000,"method":"shut"#), Value::Null, PARSE_ERROR),
        (
            "a batch",
            framed(br#"[{"jsonrpc":"2.0","id":1001,"method":"shutdown"},{"jsonrpc":"2.0","method":"initialized"}]"#),
            Value::Null,
            INVALID_REQUEST,
        ),
        ("no jsonrpc", framed(br#"{"id":1002,"method":"workspace/symbol","params":{"query":""}}"#), json!(1002), INVALID_REQUEST),
        ("an object as id", framed(br#"{"jsonrpc":"2.0","id":{"a":1},"method":"shutdown"}"#), Value::Null, INVALID_REQUEST),
        ("a method that is a number", framed(br#"{"jsonrpc":"2.0","id":1003,"method":7}"#), json!(1003), INVALID_REQUEST),
        ("invalid UTF-8", framed(b"{\"jsonrpc\":\"2.0\",\"id\":1004,\"method\":\"\xff\xfe\"}"), Value::Null, PARSE_ERROR),
        (
            "a lone surrogate",
            framed(br#"{"jsonrpc":"2.0","id":1005,"method":"textDocument/hover","params":{"x":"\ud800"}}"#),
            Value::Null,
            PARSE_ERROR,
        ),
        (
            "a header without Content-Length",
            b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1006,\"method\":\"shutdown\"}"
                .to_vec(),
            Value::Null,
            PARSE_ERROR,
        ),
        ("a header that is garbage", b"hello there\r\n\r\n".to_vec(), Value::Null, PARSE_ERROR),
        ("not JSON at all", framed(b"Content-Length"), Value::Null, PARSE_ERROR),
        ("a number", framed(b"42"), Value::Null, INVALID_REQUEST),
    ];
    for (what, bytes, id, code) in cases {
        client.send_raw(&bytes).await;
        error_answer(&mut client, what, id, code).await;
        still_answers(&mut client, &path, what).await;
    }
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_shorter_than_announced_costs_only_itself() {
    let (mut client, path) = started().await;
    // The first body says 200 bytes but has 20: the next message starts inside it.
    let next = framed(br#"{"jsonrpc":"2.0","id":2000,"method":"workspace/symbol","params":{"query":"hello"}}"#);
    let mut bytes = b"Content-Length: 200\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\"".to_vec();
    bytes.extend_from_slice(&next);
    bytes.extend_from_slice(&[b' '; 200]);
    client.send_raw(&bytes).await;
    error_answer(&mut client, "a short body", Value::Null, PARSE_ERROR).await;
    let answer = client.next_message("the answer to the message after the short body", |m| m["id"] == 2000).await;
    assert!(answer["result"].is_array(), "{answer}");
    still_answers(&mut client, &path, "a short body").await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_dollar_requests_are_answered_and_dollar_notifications_ignored() {
    let (mut client, path) = started().await;
    client.notify("$/unknownNotification", json!({})).await;
    let answer = client.request("$/unknownRequest", json!({})).await;
    assert_eq!(answer["error"]["code"], METHOD_NOT_FOUND, "{answer}");
    let answer = client.request("unknown/request", json!({})).await;
    assert_eq!(answer["error"]["code"], METHOD_NOT_FOUND, "{answer}");
    still_answers(&mut client, &path, "$/ messages").await;
    client.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_without_shutdown_is_an_abrupt_ending() {
    let (client, _) = started().await;
    assert_eq!(client.exit().await, Ending::WithoutShutdown);
}
