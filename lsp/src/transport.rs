//! The transport: Content-Length framing and JSON-RPC validation, in front of the
//! `tower-lsp-server` service.
//!
//! `tower_lsp_server::Server` stops reading after the first message it cannot decode, and the
//! editor is left with a dead server. This transport survives bad input instead: a frame with a
//! broken header is answered with a parse error and skipped up to the next `Content-Length:`;
//! a body that is not JSON (or not UTF-8) is answered with a parse error (-32700, id null); JSON
//! that is not a valid message (a batch, no `"jsonrpc": "2.0"`, an object as id) is answered
//! with "invalid request" (-32600). Only well-formed messages reach the service.
//!
//! It also fills two gaps of the protocol as `LspService` implements it: requests for unknown
//! `$/` methods are answered with "method not found" (the service drops them, which would leave
//! the client waiting), and the session reports whether `exit` came after `shutdown`, for the
//! exit code the specification asks for.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tower::Service;
use tower_lsp_server::jsonrpc::{Error, ErrorCode, Id, Request, Response};

use crate::server::Options;

/// How many requests run at once (as `tower_lsp_server::Server` does by default).
const CONCURRENCY: usize = 4;
/// A header block longer than this is not one.
const MAX_HEADER: usize = 8 * 1024;
/// A body longer than this is refused rather than buffered.
const MAX_BODY: usize = 256 * 1024 * 1024;
/// How long answers still being computed may take to be written after `exit` (or the end of
/// the input) before the session ends anyway.
const GRACE: Duration = Duration::from_secs(1);
const MARKER: &[u8] = b"content-length:";

/// How a session ended, which decides the exit code of `aptc lsp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client sent `shutdown` before `exit` (or before closing the input): exit code 0.
    AfterShutdown,
    /// `exit` or the end of the input without a `shutdown` first: exit code 1.
    WithoutShutdown,
}

/// Why a frame was skipped.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("a header without Content-Length")]
    MissingLength,
    #[error("a malformed header line: {0:?}")]
    BadHeader(String),
    #[error("a Content-Length of {0} bytes, more than the {MAX_BODY} accepted")]
    TooLong(usize),
    #[error("the input ended inside a message")]
    Truncated,
}

/// One frame of the input: a body, or a broken frame that was skipped.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Body(Vec<u8>),
    Broken(FrameError),
}

/// Reads frames, and finds the next one after a broken one.
pub struct Frames<R> {
    input: R,
    buffer: Vec<u8>,
    ended: bool,
    /// After a broken frame: skipping input up to the next `Content-Length:`.
    skipping: bool,
}

impl<R: AsyncRead + Unpin> Frames<R> {
    pub fn new(input: R) -> Frames<R> {
        Frames { input, buffer: Vec::new(), ended: false, skipping: false }
    }

    /// The next frame; `None` when the input has ended.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.skipping {
                match find_marker(&self.buffer) {
                    Some(at) => {
                        self.buffer.drain(..at);
                        self.skipping = false;
                    }
                    None => {
                        // Keep what could be the start of a marker.
                        let keep = self.buffer.len().min(MARKER.len() - 1);
                        self.buffer.drain(..self.buffer.len() - keep);
                        if !self.fill().await {
                            return None;
                        }
                        continue;
                    }
                }
            }
            // Blank lines between messages are harmless.
            let blank = self.buffer.iter().take_while(|b| b.is_ascii_whitespace()).count();
            self.buffer.drain(..blank);
            let Some(end) = self.buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
                if self.buffer.len() > MAX_HEADER {
                    return Some(self.broken(FrameError::MissingLength));
                }
                if !self.fill().await {
                    return self.truncated();
                }
                continue;
            };
            let length = match header_length(&self.buffer[..end]) {
                Ok(length) if length > MAX_BODY => Err(FrameError::TooLong(length)),
                other => other,
            };
            let length = match length {
                Ok(length) => length,
                Err(error) => return Some(self.broken(error)),
            };
            let start = end + 4;
            while self.buffer.len() < start + length {
                if !self.fill().await {
                    return self.truncated();
                }
            }
            let body = self.buffer[start..start + length].to_vec();
            self.buffer.drain(..start + length);
            return Some(Frame::Body(body));
        }
    }

    /// After a body that did not parse: if it holds the start of another message (its
    /// Content-Length said more than the client sent), read on from there rather than lose
    /// that message too.
    pub fn reread_from_marker(&mut self, body: &[u8]) {
        if let Some(at) = body.get(1..).and_then(find_marker) {
            let mut rest = body[at + 1..].to_vec();
            rest.append(&mut self.buffer);
            self.buffer = rest;
        }
    }

    fn broken(&mut self, error: FrameError) -> Frame {
        // Skip at least the first byte, so the broken header is not found again.
        self.buffer.drain(..1.min(self.buffer.len()));
        self.skipping = true;
        Frame::Broken(error)
    }

    fn truncated(&mut self) -> Option<Frame> {
        let rest = std::mem::take(&mut self.buffer);
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(Frame::Broken(FrameError::Truncated))
    }

    /// Reads more input; false at its end.
    async fn fill(&mut self) -> bool {
        if self.ended {
            return false;
        }
        let mut chunk = [0; 8192];
        match self.input.read(&mut chunk).await {
            Ok(0) => {}
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                return true;
            }
            Err(error) => tracing::warn!("reading the input: {error}"),
        }
        self.ended = true;
        false
    }
}

fn find_marker(bytes: &[u8]) -> Option<usize> {
    bytes.windows(MARKER.len()).position(|w| w.eq_ignore_ascii_case(MARKER))
}

/// The Content-Length of a header block (`Name: value` lines; names other than Content-Length
/// are ignored).
fn header_length(block: &[u8]) -> Result<usize, FrameError> {
    let text = std::str::from_utf8(block).map_err(|_| FrameError::BadHeader(String::from_utf8_lossy(block).into()))?;
    let mut length = None;
    for line in text.split("\r\n") {
        let bad = || FrameError::BadHeader(line.chars().take(80).collect());
        let (name, value) = line.split_once(':').ok_or_else(bad)?;
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(bad());
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.trim().parse::<usize>().map_err(|_| bad())?);
        }
    }
    length.ok_or(FrameError::MissingLength)
}

/// A message from the client, checked.
#[derive(Debug)]
pub enum Incoming {
    Request(Request),
    Response(Response),
}

/// A body checked as a JSON-RPC message; an error is the response it deserves.
pub fn classify(body: &[u8]) -> Result<Incoming, Response> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        tracing::warn!("a message that is not JSON: {error}");
        Response::from_error(Id::Null, Error::parse_error())
    })?;
    let invalid = |id: Id, why: &str| {
        tracing::warn!("an invalid message ({why}): {}", truncate(&value));
        let mut error = Error::invalid_request();
        error.message = format!("Invalid request: {why}").into();
        Response::from_error(id, error)
    };
    let Value::Object(fields) = &value else {
        let why = if value.is_array() { "batches are not supported" } else { "not an object" };
        return Err(invalid(Id::Null, why));
    };
    let id = match fields.get("id") {
        None => None,
        Some(Value::Null) => Some(Id::Null),
        Some(Value::String(s)) => Some(Id::String(s.clone())),
        Some(Value::Number(n)) if n.is_i64() => Some(Id::Number(n.as_i64().unwrap_or_default())),
        Some(_) => return Err(invalid(Id::Null, "the id must be a string or an integer")),
    };
    let reply_to = id.clone().unwrap_or(Id::Null);
    if fields.get("jsonrpc") != Some(&Value::from("2.0")) {
        return Err(invalid(reply_to, "\"jsonrpc\": \"2.0\" is missing"));
    }
    match fields.get("method") {
        Some(Value::String(_)) => {
            serde_json::from_value(value.clone()).map(Incoming::Request).map_err(|_| invalid(reply_to, "malformed"))
        }
        Some(_) => Err(invalid(reply_to, "the method must be a string")),
        None if id.is_some() && (fields.contains_key("result") || fields.contains_key("error")) => {
            serde_json::from_value(value.clone()).map(Incoming::Response).map_err(|_| invalid(reply_to, "malformed"))
        }
        None => Err(invalid(reply_to, "neither a request nor a response")),
    }
}

fn truncate(value: &Value) -> String {
    let mut text = value.to_string();
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Serves one session of the protocol on `input` and `output` until `exit` or the end of the
/// input.
pub async fn serve<I, O>(input: I, mut output: O, options: Options) -> Ending
where
    I: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
{
    let (mut service, socket) = crate::service(options);
    let (client_requests, mut client_responses) = socket.split();
    let (client_requests, stop_client_requests) = futures::stream::abortable(client_requests);
    let (out, mut outgoing) = mpsc::unbounded_channel::<String>();
    let (tasks, pending) = mpsc::channel::<futures::future::BoxFuture<'static, Option<Response>>>(100);
    let shut_down = Arc::new(AtomicBool::new(false));
    let stopped = Notify::new();

    let read = {
        let out = out.clone();
        let shut_down = shut_down.clone();
        let stopped = &stopped;
        async move {
            let mut frames = Frames::new(input);
            while let Some(frame) = frames.next().await {
                let body = match frame {
                    Frame::Body(body) => body,
                    Frame::Broken(error) => {
                        tracing::warn!("skipping a broken message: {error}");
                        let _ = out.send(encode(&Response::from_error(Id::Null, Error::parse_error())));
                        continue;
                    }
                };
                let request = match classify(&body) {
                    Ok(Incoming::Request(request)) => request,
                    Ok(Incoming::Response(response)) => {
                        if let Err(error) = client_responses.send(response).await {
                            tracing::warn!("a response from the client: {error}");
                        }
                        continue;
                    }
                    Err(answer) => {
                        if answer.error().is_some_and(|e| e.code == ErrorCode::ParseError) {
                            frames.reread_from_marker(&body);
                        }
                        let _ = out.send(encode(&answer));
                        continue;
                    }
                };
                if futures::future::poll_fn(|cx| service.poll_ready(cx)).await.is_err() {
                    break;
                }
                let method = request.method().to_string();
                let id = request.id().cloned();
                let call = service.call(request);
                if method == "exit" {
                    let _ = call.await;
                    break;
                }
                let shut_down = shut_down.clone();
                let task = async move {
                    let response = match call.await {
                        Ok(Some(response)) => response,
                        // Only `$/` requests go unanswered by the service; they deserve an answer.
                        Ok(None) => {
                            let mut error = Error::method_not_found();
                            error.data = Some(Value::from(method.clone()));
                            Response::from_error(id?, error)
                        }
                        Err(_exited) => return None,
                    };
                    if method == "shutdown" && response.is_ok() {
                        shut_down.store(true, Ordering::SeqCst);
                    }
                    Some(response)
                };
                if tasks.send(Box::pin(task)).await.is_err() {
                    break;
                }
            }
            drop(tasks);
            stopped.notify_one();
        }
    };

    let run = async move {
        let mut answers = tokio_stream(pending).buffer_unordered(CONCURRENCY);
        while let Some(answer) = answers.next().await {
            if let Some(response) = answer {
                let _ = out.send(encode(&response));
            }
        }
    };

    let write = async {
        let mut client_requests = client_requests.fuse();
        let mut open = true;
        loop {
            let body = tokio::select! {
                body = outgoing.recv() => match body {
                    Some(body) => body,
                    None => break,
                },
                request = client_requests.next(), if open => match request {
                    Some(request) => encode(&request),
                    None => { open = false; continue }
                },
            };
            let frame = format!("Content-Length: {}\r\n\r\n{body}", body.len());
            if let Err(error) = async {
                output.write_all(frame.as_bytes()).await?;
                output.flush().await
            }
            .await
            {
                tracing::warn!("writing the output: {error}");
                break;
            }
        }
    };

    let session = async {
        tokio::join!(read, run, write);
    };
    let grace = async {
        stopped.notified().await;
        tokio::time::sleep(GRACE).await;
        tracing::debug!("answers still running after {GRACE:?} are dropped");
    };
    tokio::select! {
        () = session => {}
        () = grace => {}
    }
    stop_client_requests.abort();
    if shut_down.load(Ordering::SeqCst) { Ending::AfterShutdown } else { Ending::WithoutShutdown }
}

fn tokio_stream<T>(mut receiver: mpsc::Receiver<T>) -> impl futures::Stream<Item = T> {
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

fn encode(message: &impl serde::Serialize) -> String {
    serde_json::to_string(message).unwrap_or_else(|error| {
        tracing::error!("encoding a message: {error}");
        String::new()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8]) -> Vec<Frame> {
        let mut frames = Frames::new(input);
        let mut all = Vec::new();
        while let Some(frame) = frames.next().await {
            all.push(frame);
        }
        all
    }

    fn body(text: &str) -> Frame {
        Frame::Body(text.as_bytes().to_vec())
    }

    #[tokio::test]
    async fn frames_resynchronise_after_broken_headers() {
        let input = b"Content-Type: x\r\n\r\n{}Content-Length: 2\r\n\r\n{}\
            garbage\r\nContent-Length: 3\r\n\r\n[1]\
            Content-Length: abc\r\n\r\nContent-Length: 1\r\n\r\n1\
            Content-Length: 10";
        let got = frames(input).await;
        assert_eq!(
            got,
            vec![
                Frame::Broken(FrameError::MissingLength),
                body("{}"),
                Frame::Broken(FrameError::BadHeader("garbage".into())),
                body("[1]"),
                Frame::Broken(FrameError::BadHeader("Content-Length: abc".into())),
                body("1"),
                Frame::Broken(FrameError::Truncated),
            ]
        );
    }

    #[tokio::test]
    async fn a_body_shorter_than_announced_gives_back_the_next_message() {
        let input = b"Content-Length: 30\r\n\r\n{\"a\"Content-Length: 2\r\n\r\n{}Content-Length: 2\r\n\r\n[]";
        let mut frames = Frames::new(&input[..]);
        let Some(Frame::Body(first)) = frames.next().await else { panic!("a body") };
        assert!(classify(&first).is_err());
        frames.reread_from_marker(&first);
        assert_eq!(frames.next().await, Some(body("{}")));
        assert_eq!(frames.next().await, Some(body("[]")));
        assert_eq!(frames.next().await, None);
    }

    #[test]
    fn invalid_messages_get_the_right_error() {
        let code = |text: &[u8]| match classify(text) {
            Ok(_) => None,
            Err(response) => {
                let (id, body) = response.into_parts();
                Some((id, body.err().map(|e| e.code.code())))
            }
        };
        assert_eq!(code(b"{\"jsonrpc\":\"2.0\",\"id\":"), Some((Id::Null, Some(-32700))));
        assert_eq!(code(b"{\"jsonrpc\":\"2.0\",\"method\":\"\\ud800\"}"), Some((Id::Null, Some(-32700))));
        assert_eq!(code(b"[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"shutdown\"}]"), Some((Id::Null, Some(-32600))));
        assert_eq!(code(b"{\"id\":7,\"method\":\"shutdown\"}"), Some((Id::Number(7), Some(-32600))));
        assert_eq!(code(b"{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"shutdown\"}"), Some((Id::Null, Some(-32600))));
        assert_eq!(code(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":3}"), Some((Id::Number(1), Some(-32600))));
        assert_eq!(code(b"{\"jsonrpc\":\"2.0\",\"id\":1}"), Some((Id::Number(1), Some(-32600))));
        assert!(code(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"shutdown\"}").is_none());
        assert!(code(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":null}").is_none());
        assert_eq!(code(b"{\"jsonrpc\":\"2.0\",\"method\":\"\xff\"}"), Some((Id::Null, Some(-32700))));
    }
}
