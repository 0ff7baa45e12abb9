//! A test client: speaks JSON-RPC with Content-Length framing to the server, in process over
//! an in-memory pipe (the same transport, `aptc_lsp::serve`, that `aptc lsp` uses on stdio).

#![allow(dead_code)] // each test file uses a part of it

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aptc_lsp::ls_types::Uri;
use aptc_lsp::{Ending, Options};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long any one answer may take.
pub const TIMEOUT: Duration = Duration::from_secs(20);

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_path_buf()
}

pub fn uri(path: &Path) -> String {
    Uri::from_file_path(path).expect("an absolute path").as_str().to_string()
}

type Pending = Arc<Mutex<HashMap<i64, oneshot::Sender<Value>>>>;

pub struct TestClient {
    writer: WriteHalf<DuplexStream>,
    next_id: i64,
    pending: Pending,
    notifications: mpsc::UnboundedReceiver<Value>,
    /// Notifications read while waiting for another one.
    seen: Vec<Value>,
    server: JoinHandle<Ending>,
}

impl TestClient {
    /// Starts a server in this runtime and connects to it.
    pub fn start(options: Options) -> TestClient {
        let (client_end, server_end) = tokio::io::duplex(1 << 16);
        let (server_read, server_write) = tokio::io::split(server_end);
        let server = tokio::spawn(aptc_lsp::serve(server_read, server_write, options));
        let (reader, writer) = tokio::io::split(client_end);
        let pending: Pending = Arc::default();
        let (sender, notifications) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(reader, pending.clone(), sender));
        TestClient { writer, next_id: 1, pending, notifications, seen: Vec::new(), server }
    }

    async fn send(&mut self, message: Value) {
        let body = message.to_string();
        self.send_raw(format!("Content-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).await;
    }

    /// Writes bytes as they are, framing included.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("writing to the server");
        self.writer.flush().await.expect("flushing");
    }

    /// Sends a request and waits for its response (the whole message: `result` or `error`).
    pub async fn request(&mut self, method: &str, params: Value) -> Value {
        let pending = self.send_request(method, params).await;
        pending.answer().await
    }

    /// Sends a request without waiting for its response.
    pub async fn send_request(&mut self, method: &str, params: Value) -> PendingRequest {
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })).await;
        PendingRequest { method: method.to_string(), rx }
    }

    /// The `result` of a request, failing on an error response.
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params).await;
        assert!(response.get("error").is_none(), "{method} failed: {response}");
        response["result"].clone()
    }

    pub async fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params })).await;
    }

    /// Answers a request from the server.
    pub async fn respond(&mut self, id: Value, result: Value) {
        self.send(json!({ "jsonrpc": "2.0", "id": id, "result": result })).await;
    }

    /// Initializes with `root` as the only workspace folder.
    pub async fn initialize(&mut self, root: &Path) -> Value {
        self.initialize_with(root, json!({})).await
    }

    /// Initializes with `root` as the only workspace folder and these client capabilities.
    pub async fn initialize_with(&mut self, root: &Path, capabilities: Value) -> Value {
        let result = self
            .call(
                "initialize",
                json!({
                    "processId": null,
                    "capabilities": capabilities,
                    "workspaceFolders": [{ "uri": uri(root), "name": "test" }],
                }),
            )
            .await;
        self.notify("initialized", json!({})).await;
        result
    }

    pub async fn open(&mut self, path: &Path, text: &str) {
        let params = json!({ "textDocument": { "uri": uri(path), "languageId": "apt", "version": 1, "text": text } });
        self.notify("textDocument/didOpen", params).await;
    }

    pub async fn open_from_disk(&mut self, path: &Path) -> String {
        let text = std::fs::read_to_string(path).expect("reading an example");
        self.open(path, &text).await;
        text
    }

    /// The next `publishDiagnostics` for `path` that satisfies `accept`.
    pub async fn diagnostics(&mut self, path: &Path, accept: impl Fn(&Vec<Value>) -> bool) -> Vec<Value> {
        let wanted = uri(path);
        let what = format!("fitting diagnostics for {wanted}");
        let message = self
            .next_message(&what, |message| {
                message["method"] == "textDocument/publishDiagnostics"
                    && message["params"]["uri"] == wanted.as_str()
                    && accept(message["params"]["diagnostics"].as_array().unwrap_or(&Vec::new()))
            })
            .await;
        message["params"]["diagnostics"].as_array().cloned().unwrap_or_default()
    }

    /// The next message other than a response to a request of ours (notifications and
    /// requests from the server, answers with no id of ours) that satisfies `accept`.
    pub async fn next_message(&mut self, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        loop {
            let next = tokio::time::timeout_at(deadline, self.notifications.recv()).await;
            let message = match next {
                Ok(Some(message)) => message,
                Ok(None) => panic!("the server closed the connection"),
                Err(_) => panic!("no {what} within {TIMEOUT:?}; saw {:#?}", self.seen),
            };
            if accept(&message) {
                return message;
            }
            self.seen.push(message);
        }
    }

    /// Whether a message satisfying `accept` arrives within `wait` (messages read are kept
    /// for later waits).
    pub async fn receives_within(&mut self, wait: Duration, accept: impl Fn(&Value) -> bool) -> bool {
        if self.seen.iter().any(&accept) {
            return true;
        }
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, self.notifications.recv()).await {
            let fits = accept(&message);
            self.seen.push(message);
            if fits {
                return true;
            }
        }
        false
    }

    /// Sends `exit` and waits for the server to end.
    pub async fn exit(mut self) -> Ending {
        self.notify("exit", Value::Null).await;
        tokio::time::timeout(TIMEOUT, self.server).await.expect("the server ends after exit").expect("serving")
    }

    pub async fn shutdown(mut self) {
        let response = self.request("shutdown", Value::Null).await;
        assert!(response.get("error").is_none(), "{response}");
        assert_eq!(self.exit().await, Ending::AfterShutdown);
    }
}

/// A request on its way.
pub struct PendingRequest {
    pub method: String,
    rx: oneshot::Receiver<Value>,
}

impl PendingRequest {
    /// Its response, within [`TIMEOUT`].
    pub async fn answer(self) -> Value {
        let method = self.method;
        match tokio::time::timeout(TIMEOUT, self.rx).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => panic!("{method}: the server closed the connection"),
            Err(_) => panic!("{method}: no answer within {TIMEOUT:?}"),
        }
    }
}

async fn read_loop(reader: ReadHalf<DuplexStream>, pending: Pending, notifications: mpsc::UnboundedSender<Value>) {
    let mut reader = BufReader::new(reader);
    loop {
        let mut length = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
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
        let mut body = vec![0; length.expect("a Content-Length header")];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let message: Value = serde_json::from_slice(&body).expect("JSON from the server");
        match (message.get("id"), message.get("method")) {
            (Some(id), None) => match id.as_i64().and_then(|id| pending.lock().unwrap().remove(&id)) {
                Some(tx) => {
                    let _ = tx.send(message);
                }
                // Answers to no request of ours (errors with id null) are for `next_message`.
                None => {
                    let _ = notifications.send(message);
                }
            },
            _ => {
                let _ = notifications.send(message);
            }
        }
    }
}

/// An LSP position.
pub fn position(line: u32, character: u32) -> Value {
    json!({ "line": line, "character": character })
}

/// `{ textDocument, position }` for `path`.
pub fn at(path: &Path, line: u32, character: u32) -> Value {
    json!({ "textDocument": { "uri": uri(path) }, "position": position(line, character) })
}

/// The (line, character) of the `nth` occurrence of `needle` in `text`, plus `delta` characters.
pub fn find(text: &str, needle: &str, delta: u32) -> (u32, u32) {
    let offset = text.find(needle).unwrap_or_else(|| panic!("`{needle}` not found"));
    let before = &text[..offset];
    let line = before.matches('\n').count() as u32;
    let column = before.rsplit('\n').next().unwrap_or("").encode_utf16().count() as u32;
    (line, column + delta)
}
