//! `aptc lsp`, the real binary, over stdio: JSON-RPC with Content-Length framing, as an
//! editor speaks it. (The other protocol tests run the server in process: lsp/tests/.)

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use aptc_lsp::ls_types::Uri;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(30);

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/twitter-analytics")
}

fn uri(path: &Path) -> String {
    Uri::from_file_path(path).expect("an absolute path").as_str().to_string()
}

struct Server {
    child: Child,
    stdin: ChildStdin,
    messages: Receiver<Value>,
    next_id: i64,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aptc"))
            .arg("lsp")
            .env_remove("APTC_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting aptc lsp");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            loop {
                let mut length = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(value) = line.strip_prefix("Content-Length: ") {
                        length = value.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; length.expect("Content-Length")];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                if tx.send(serde_json::from_slice(&body).expect("JSON")).is_err() {
                    return;
                }
            }
        });
        Server { child, stdin, messages, next_id: 1 }
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        self.send_raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes());
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stdin.write_all(bytes).unwrap();
        self.stdin.flush().unwrap();
    }

    /// The exit status, once the server has ended.
    fn status(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "aptc lsp did not exit after `exit`");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params }));
    }

    /// The first message that satisfies `accept`, skipping others.
    fn wait_for(&mut self, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self.messages.recv_timeout(left).unwrap_or_else(|_| panic!("no {what} within {TIMEOUT:?}"));
            if accept(&message) {
                return message;
            }
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }));
        let response = self.wait_for(method, |m| m["id"] == id && m.get("method").is_none());
        assert!(response.get("error").is_none(), "{method} failed: {response}");
        response["result"].clone()
    }
}

#[test]
fn the_binary_serves_the_protocol_on_stdio() {
    let mut server = Server::start();
    let root = example();
    let init = server.call(
        "initialize",
        json!({ "processId": null, "capabilities": {}, "workspaceFolders": [{ "uri": uri(&root), "name": "example" }] }),
    );
    assert_eq!(init["serverInfo"]["name"], "aptc");
    server.notify("initialized", json!({}));

    let pipeline = root.join("analytics/pipeline.apt");
    let text = std::fs::read_to_string(&pipeline).unwrap();
    server.notify(
        "textDocument/didOpen",
        json!({ "textDocument": { "uri": uri(&pipeline), "languageId": "apt", "version": 1, "text": text } }),
    );
    let published = server.wait_for("diagnostics", |m| {
        m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri(&pipeline).as_str()
    });
    assert_eq!(published["params"]["diagnostics"], json!([]), "the example is clean");

    // `component kafka uses kafka`: the contract platform.kafka (platform/kafka.apt, line 30).
    let offset = text.find("uses kafka").unwrap() + 6;
    let line = text[..offset].matches('\n').count();
    let character = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let definition = server.call(
        "textDocument/definition",
        json!({ "textDocument": { "uri": uri(&pipeline) }, "position": { "line": line, "character": character } }),
    );
    assert_eq!(definition["uri"], uri(&root.join("platform/kafka.apt")));
    assert_eq!(definition["range"]["start"]["line"], 29);

    server.call("shutdown", Value::Null);
    server.notify("exit", Value::Null);
    let status = server.status();
    assert!(status.success(), "aptc lsp exited with {status}");
}

#[test]
fn the_binary_survives_broken_messages_and_exits_with_1_without_shutdown() {
    let mut server = Server::start();
    let root = example();
    server.call("initialize", json!({ "processId": null, "capabilities": {}, "rootUri": uri(&root) }));
    server.notify("initialized", json!({}));
    let framed = |body: &str| format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes();
    let broken = [
        framed("{\"jsonrpc\":"),
        framed("[]"),
        framed("{\"id\":1,\"method\":\"shutdown\"}"),
        framed("\"\\ud800\""),
        b"Content-Type: text/plain\r\n\r\n{}".to_vec(),
    ];
    for bytes in broken {
        server.send_raw(&bytes);
        let what = String::from_utf8_lossy(&bytes).into_owned();
        let answer = server.wait_for(&what, |m| m.get("error").is_some());
        assert!([-32700, -32600].contains(&answer["error"]["code"].as_i64().unwrap()), "{what}: {answer}");
        let symbols = server.call("workspace/symbol", json!({ "query": "kafka" }));
        assert!(!symbols.as_array().unwrap().is_empty(), "after {what}: {symbols}");
    }
    server.notify("exit", Value::Null);
    assert_eq!(server.status().code(), Some(1), "`exit` without `shutdown`");
}
