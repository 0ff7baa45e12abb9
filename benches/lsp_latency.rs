//! Latency of the language server while someone types: `cargo bench --bench lsp_latency`.
//!
//! Drives the real server over its protocol (in process, through `aptc_lsp::serve` on an
//! in-memory pipe: the same transport `aptc lsp` runs on stdio) on a generated workspace
//! (`synth.rs`, 100,000 lines by default). One document is opened, then single-character edits
//! arrive every 100 ms (typing, then deleting, a suffix of a name, so diagnostics change), each
//! followed at once by a completion request. Printed: the time from each `didChange` to the
//! `publishDiagnostics` of that document for that version (or a later one: the time until the
//! editor shows diagnostics that account for the keystroke, debounce included), and the time to
//! answer each completion. Timings are what a user sees; nothing here is asserted.
//!
//! Then, on `examples/guestbook` and `examples/twitter-analytics`, the file of their assertions
//! is opened and saved after an edit (an edit clears the assertions' results, a save verifies
//! them again: docs/verification.md §5), `--saves` times: printed, the time from each `didSave`
//! to the `publishDiagnostics` of that file that shows the assertions' results again.
//!
//! Arguments (after `--`): `--lines N`, `--edits N`, `--interval-ms N`, `--saves N`, `--only-save`.

mod synth;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aptc_lsp::ls_types::Uri;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream, WriteHalf};
use tokio::sync::oneshot;

struct Args {
    lines: usize,
    edits: usize,
    interval: Duration,
    saves: usize,
    only_save: bool,
}

fn args() -> Args {
    let mut args =
        Args { lines: 100_000, edits: 200, interval: Duration::from_millis(100), saves: 20, only_save: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().and_then(|v| v.parse::<u64>().ok());
        match arg.as_str() {
            "--lines" => args.lines = value().map_or(args.lines, |v| v as usize),
            "--edits" => args.edits = value().map_or(args.edits, |v| v as usize),
            "--interval-ms" => args.interval = value().map_or(args.interval, Duration::from_millis),
            "--saves" => args.saves = value().map_or(args.saves, |v| v as usize),
            "--only-save" => args.only_save = true,
            _ => {} // `cargo bench` passes `--bench`
        }
    }
    args
}

fn main() {
    let args = args();
    // As `aptc lsp` runs it.
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("a runtime");
    if !args.only_save {
        typing(&runtime, &args);
    }
    // This bench belongs to the `aptc-lsp` crate (lsp/): the examples are one level up.
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for (example, file) in [("guestbook", "assertions.apt"), ("twitter-analytics", "social/assertions.apt")] {
        let times = runtime.block_on(measure_save(&examples.join(example), file, args.saves));
        report(&format!("didSave → assertion diagnostics ({example})"), times, args.saves);
    }
    runtime.shutdown_timeout(Duration::from_millis(100));
}

/// The typing measurement on a generated workspace.
fn typing(runtime: &tokio::runtime::Runtime, args: &Args) {
    let dir = std::env::temp_dir().join(format!("aptc-lsp-latency-{}", std::process::id()));
    let files = synth::generate(&synth::SynthConfig::for_lines(args.lines, 7));
    for file in &files {
        let path = dir.join(&file.path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("creating the workspace");
        std::fs::write(&path, &file.text).expect("writing the workspace");
    }
    let lines: usize = files.iter().map(|f| f.text.lines().count()).sum();
    let bytes = synth::total_bytes(&files);
    println!(
        "workspace: {} files, {lines} lines, {bytes} bytes; {} edits {:?} apart",
        files.len(),
        args.edits,
        args.interval
    );
    let measured = runtime.block_on(measure(&dir, &files[files.len() / 2].path, args));
    let _ = std::fs::remove_dir_all(&dir);
    report("didChange → publishDiagnostics", measured.diagnostics, args.edits);
    report("completion after a keystroke", measured.completion, args.edits);
    if measured.completion_errors > 0 {
        println!("  ({} completions answered with an error)", measured.completion_errors);
    }
}

struct Measured {
    diagnostics: Vec<Duration>,
    completion: Vec<Duration>,
    completion_errors: usize,
}

fn report(what: &str, mut times: Vec<Duration>, expected: usize) {
    times.sort();
    let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    if times.is_empty() {
        println!("{what}: no samples of {expected}");
        return;
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} of {expected} samples)",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(at(1.0)),
        times.len()
    );
}

/// What the reader saw: responses by request id, and each `publishDiagnostics` of any file
/// (URI, version, arrival, whether it shows an assertion's result).
#[derive(Default)]
struct Seen {
    waiting: HashMap<i64, oneshot::Sender<(Value, Instant)>>,
    published: Vec<(String, Option<i64>, Instant, bool)>,
}

struct Client {
    writer: WriteHalf<DuplexStream>,
    next_id: i64,
    seen: Arc<Mutex<Seen>>,
}

impl Client {
    async fn send(&mut self, message: Value) {
        let body = message.to_string();
        let framed = format!("Content-Length: {}\r\n\r\n{body}", body.len());
        self.writer.write_all(framed.as_bytes()).await.expect("writing to the server");
        self.writer.flush().await.expect("flushing");
    }

    async fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({ "jsonrpc": "2.0", "method": method, "params": params })).await;
    }

    /// Sends a request; returns its response and when it arrived.
    async fn request(&mut self, method: &str, params: Value) -> (Value, Instant) {
        let id = self.next_id;
        self.next_id += 1;
        let (tx, rx) = oneshot::channel();
        self.seen.lock().expect("the lock").waiting.insert(id, tx);
        self.send(json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })).await;
        tokio::time::timeout(Duration::from_secs(60), rx).await.expect("an answer in time").expect("an answer")
    }

    /// When `uri` was first published at `version` or later, after `since`.
    fn published(&self, uri: &str, version: i64, since: Instant) -> Option<Instant> {
        let seen = self.seen.lock().expect("the lock");
        seen.published
            .iter()
            .find(|(u, v, at, _)| u == uri && v.is_some_and(|v| v >= version) && *at >= since)
            .map(|(_, _, at, _)| *at)
    }

    /// When `uri` was first published with an assertion's result, after `since`.
    fn verified(&self, uri: &str, since: Instant) -> Option<Instant> {
        let seen = self.seen.lock().expect("the lock");
        seen.published
            .iter()
            .find(|(u, _, at, verified)| u == uri && *verified && *at >= since)
            .map(|(_, _, at, _)| *at)
    }
}

async fn read_loop(reader: tokio::io::ReadHalf<DuplexStream>, seen: Arc<Mutex<Seen>>) {
    let mut reader = BufReader::new(reader);
    loop {
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(value) = line.strip_prefix("Content-Length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        let now = Instant::now();
        let Ok(message) = serde_json::from_slice::<Value>(&body) else { continue };
        let mut seen = seen.lock().expect("the lock");
        if message["method"] == "textDocument/publishDiagnostics" {
            let params = &message["params"];
            let uri = params["uri"].as_str().unwrap_or_default().to_string();
            // A proved assertion is a hint "… is proved over …"; a violated or unknown one is
            // APT0601 or APT0602.
            let verified = params["diagnostics"].as_array().is_some_and(|all| {
                all.iter().any(|d| {
                    d["message"].as_str().is_some_and(|m| m.contains(" is proved over "))
                        || d["code"].as_str().is_some_and(|c| c == "APT0601" || c == "APT0602")
                })
            });
            seen.published.push((uri, params["version"].as_i64(), now, verified));
        } else if message.get("method").is_none()
            && let Some(id) = message["id"].as_i64()
            && let Some(tx) = seen.waiting.remove(&id)
        {
            let _ = tx.send((message, now));
        }
    }
}

fn uri(path: &Path) -> String {
    Uri::from_file_path(path).expect("an absolute path").as_str().to_string()
}

/// A server on an in-memory pipe, and a client of it.
fn connect() -> (Client, tokio::task::JoinHandle<aptc_lsp::Ending>) {
    let (client_end, server_end) = tokio::io::duplex(1 << 20);
    let (server_read, server_write) = tokio::io::split(server_end);
    let server = tokio::spawn(aptc_lsp::serve(server_read, server_write, aptc_lsp::Options::default()));
    let (reader, writer) = tokio::io::split(client_end);
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(read_loop(reader, seen.clone()));
    (Client { writer, next_id: 1, seen }, server)
}

/// From each `didSave` of `file` in the policy at `root` to the diagnostics showing its
/// assertions' results, each save after an edit (a line added at the end, then removed) whose
/// own diagnostics have arrived.
async fn measure_save(root: &Path, file: &str, saves: usize) -> Vec<Duration> {
    let (mut client, server) = connect();
    let started = Instant::now();
    let folders = json!([{ "uri": uri(root), "name": "example" }]);
    client.request("initialize", json!({ "processId": null, "capabilities": {}, "workspaceFolders": folders })).await;
    client.notify("initialized", json!({})).await;
    let path = root.join(file);
    let document = uri(&path);
    let text = std::fs::read_to_string(&path).expect("reading the document");
    let lines = text.matches('\n').count();
    let open = json!({ "textDocument": { "uri": document, "languageId": "apt", "version": 1, "text": text } });
    client.notify("textDocument/didOpen", open).await;
    let mut times = Vec::new();
    for save in 0..saves {
        let version = save as i64 + 2;
        let end = json!({ "line": lines, "character": 0 });
        let range = if save % 2 == 0 {
            json!({ "start": end, "end": end })
        } else {
            json!({ "start": end, "end": { "line": lines + 1, "character": 0 } })
        };
        let new_text = if save % 2 == 0 { "\n" } else { "" };
        let tick = Instant::now();
        let change = json!({
            "textDocument": { "uri": document, "version": version },
            "contentChanges": [{ "range": range, "text": new_text }],
        });
        client.notify("textDocument/didChange", change).await;
        let deadline = tick + Duration::from_secs(10);
        while client.published(&document, version, tick).is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let tick = Instant::now();
        client.notify("textDocument/didSave", json!({ "textDocument": { "uri": document } })).await;
        let deadline = tick + Duration::from_secs(30);
        loop {
            if let Some(at) = client.verified(&document, tick) {
                times.push(at - tick);
                break;
            }
            if Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    println!("{}: {} saves in {:?}", root.display(), saves, started.elapsed());
    client.request("shutdown", Value::Null).await;
    client.notify("exit", Value::Null).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    times
}

async fn measure(root: &Path, file: &str, args: &Args) -> Measured {
    let (mut client, server) = connect();

    let started = Instant::now();
    let folders = json!([{ "uri": uri(root), "name": "synth" }]);
    client.request("initialize", json!({ "processId": null, "capabilities": {}, "workspaceFolders": folders })).await;
    client.notify("initialized", json!({})).await;
    let path: PathBuf = root.join(file);
    let document = uri(&path);
    let mut text = std::fs::read_to_string(&path).expect("reading the document");
    let open = json!({ "textDocument": { "uri": document, "languageId": "apt", "version": 1, "text": text } });
    client.notify("textDocument/didOpen", open).await;
    while client.published(&document, 1, started).is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("initialized and first diagnostics of the document in {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Type after a reference in the middle of the file: `labels.replicas` → `labels.replicasx` …
    let anchor = "replicas = labels.replicas";
    let middle = text.len() / 2;
    let at = text[middle..].find(anchor).map(|i| middle + i).or_else(|| text.find(anchor)).expect("a reference");
    let end = at + anchor.len();
    let line = text[..end].matches('\n').count();
    let column = end - text[..end].rfind('\n').map_or(0, |i| i + 1);
    let (mut diagnostics, mut completion, mut completion_errors) = (Vec::new(), Vec::new(), 0);
    let mut sent = Vec::new();
    let mut typed = 0;
    for edit in 0..args.edits {
        let version = edit as i64 + 2;
        // Five characters typed, then five deleted.
        let typing = (edit / 5) % 2 == 0;
        let (range, new_text) = if typing {
            let c = column + typed;
            typed += 1;
            (json!({ "start": { "line": line, "character": c }, "end": { "line": line, "character": c } }), "x")
        } else {
            typed -= 1;
            let c = column + typed;
            (json!({ "start": { "line": line, "character": c }, "end": { "line": line, "character": c + 1 } }), "")
        };
        if typing {
            text.insert(end + typed - 1, 'x');
        } else {
            text.remove(end + typed);
        }
        let tick = Instant::now();
        let change = json!({
            "textDocument": { "uri": document, "version": version },
            "contentChanges": [{ "range": range, "text": new_text }],
        });
        client.notify("textDocument/didChange", change).await;
        sent.push((version, tick));
        let position = json!({ "line": line, "character": column + typed });
        let params = json!({ "textDocument": { "uri": document }, "position": position });
        let (answer, at) = client.request("textDocument/completion", params).await;
        if answer.get("error").is_some() {
            completion_errors += 1;
        } else {
            completion.push(at - tick);
        }
        tokio::time::sleep_until((tick + args.interval).into()).await;
    }
    // The last edits' diagnostics.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (version, tick) in sent {
        if let Some(at) = client.published(&document, version, tick) {
            diagnostics.push(at - tick);
        }
    }
    client.request("shutdown", Value::Null).await;
    client.notify("exit", Value::Null).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    Measured { diagnostics, completion, completion_errors }
}
