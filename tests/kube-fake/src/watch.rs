//! Watches: every change of an object is an event in a log, numbered by the one global
//! resourceVersion; `?watch=true` replays the log after the `resourceVersion` asked for and then
//! streams new events as newline-delimited `WatchEvent`s (`ADDED`, `MODIFIED`, `DELETED`, and
//! `BOOKMARK`s when `allowWatchBookmarks`) until `timeoutSeconds`, the client hanging up, or
//! [`crate::FakeApi::drop_watches`]. A `resourceVersion` older than the log (see
//! [`crate::FakeApi::compact`]) gets the `ERROR` event with a `410 Gone` Status that a real API
//! server sends, so clients list again.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::kinds::Kind;
use crate::select::Selector;
use crate::{Answer, Reply, State};

/// How many events the log keeps before it forgets the oldest (as a real API server's watch cache
/// does), so a long test does not hold every object version ever written.
const KEPT: usize = 50_000;

/// Where an object lives: its collection, from its path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Collection {
    /// `/api/v1` or `/apis/GROUP/VERSION`.
    pub(crate) api: String,
    pub(crate) namespace: Option<String>,
    pub(crate) plural: String,
}

impl Collection {
    /// The collection of the object at `path` (`/api/v1/namespaces/NS/configmaps/NAME`).
    pub(crate) fn of(path: &str) -> Option<Collection> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (api, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => (format!("/api/{version}"), rest),
            ["apis", group, version, rest @ ..] => (format!("/apis/{group}/{version}"), rest),
            _ => return None,
        };
        match rest {
            ["namespaces", namespace, plural, _] => {
                Some(Collection { api, namespace: Some((*namespace).into()), plural: (*plural).into() })
            }
            [plural, _] => Some(Collection { api, namespace: None, plural: (*plural).into() }),
            _ => None,
        }
    }

    /// Whether a watch of `self` (no namespace: all of them) sees objects of `other`.
    pub(crate) fn covers(&self, other: &Collection) -> bool {
        self.api == other.api
            && self.plural == other.plural
            && (self.namespace.is_none() || self.namespace == other.namespace)
    }
}

/// A change: `before` absent for a create, `after` absent for a delete.
pub(crate) struct Event {
    pub(crate) version: u64,
    pub(crate) collection: Collection,
    pub(crate) before: Option<Value>,
    pub(crate) after: Option<Value>,
}

impl Event {
    /// The event as a watch with `selector` sees it, if at all: an object that stops matching is
    /// `DELETED` for it, one that starts matching `ADDED`.
    fn line(&self, selector: &Selector) -> Option<Bytes> {
        let was = self.before.as_ref().is_some_and(|o| selector.matches(o));
        let is = self.after.as_ref().is_some_and(|o| selector.matches(o));
        let (kind, object) = match (was, is, &self.after) {
            (false, true, Some(after)) => ("ADDED", after),
            (true, true, Some(after)) => ("MODIFIED", after),
            (true, false, Some(after)) => ("DELETED", after),
            (true, false, None) => ("DELETED", self.before.as_ref()?),
            _ => return None,
        };
        Some(line(kind, object))
    }
}

/// An open watch.
struct Watcher {
    collection: Collection,
    selector: Selector,
    sender: mpsc::UnboundedSender<Bytes>,
}

/// The event log and the open watches.
#[derive(Default)]
pub(crate) struct Log {
    events: VecDeque<Event>,
    /// Watches from a resourceVersion below this are too old (`410 Gone`).
    compacted: u64,
    watchers: Vec<Watcher>,
}

impl Log {
    /// Keeps `event` and sends it to the watches that see it (forgetting those whose client left).
    pub(crate) fn record(&mut self, event: Event) {
        self.watchers.retain(|w| {
            if !w.collection.covers(&event.collection) {
                return !w.sender.is_closed();
            }
            event.line(&w.selector).is_none_or(|line| w.sender.send(line).is_ok())
        });
        self.events.push_back(event);
        if self.events.len() > KEPT
            && let Some(old) = self.events.pop_front()
        {
            self.compacted = old.version;
        }
    }

    /// Forgets the events up to `version`: a watch from an older resourceVersion gets `410 Gone`.
    pub(crate) fn compact(&mut self, version: u64) {
        self.events.retain(|e| e.version > version);
        self.compacted = self.compacted.max(version);
    }

    /// Ends every open watch.
    pub(crate) fn drop_watchers(&mut self) {
        self.watchers.clear();
    }
}

/// One event line: `{"type":…,"object":…}` and a newline.
fn line(kind: &str, object: &Value) -> Bytes {
    let mut text = json!({ "type": kind, "object": object }).to_string();
    text.push('\n');
    Bytes::from(text)
}

/// The body of a watch response: event lines as they come, until the server ends the watch or
/// its `timeoutSeconds` pass.
pub(crate) struct Stream {
    receiver: mpsc::UnboundedReceiver<Bytes>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Stream {
    /// The next line, `None` at the end.
    pub(crate) fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Poll::Ready(line) = self.receiver.poll_recv(cx) {
            return Poll::Ready(line);
        }
        match self.deadline.as_mut().map(|deadline| deadline.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}

/// What a watch request asks for.
pub(crate) struct Request {
    pub(crate) collection: Collection,
    pub(crate) selector: Selector,
    /// `resourceVersion`: 0 (or absent) starts with every object as `ADDED`.
    pub(crate) since: u64,
    pub(crate) initial_events: bool,
    pub(crate) bookmarks: bool,
    pub(crate) timeout: Option<Duration>,
}

impl State {
    /// Opens a watch of `kind`: the replayed or initial events now, then the live ones.
    pub(crate) fn watch(&mut self, kind: &Kind, request: Request) -> Answer {
        let (sender, receiver) = mpsc::unbounded_channel();
        let deadline = request.timeout.map(|t| Box::pin(tokio::time::sleep(t)));
        let stream = Stream { receiver, deadline };
        let bookmark = |version: u64, initial_end: bool| {
            let mut metadata = json!({ "resourceVersion": version.to_string() });
            if initial_end {
                metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
            }
            line("BOOKMARK", &json!({ "apiVersion": kind.group_version(), "kind": kind.kind, "metadata": metadata }))
        };
        let mut lines = Vec::new();
        if request.initial_events || request.since == 0 {
            for (path, object) in &self.objects {
                if Collection::of(path).is_some_and(|c| request.collection.covers(&c))
                    && request.selector.matches(object)
                {
                    lines.push(line("ADDED", object));
                }
            }
            if request.initial_events {
                lines.push(bookmark(self.version, true));
            }
        } else if request.since < self.events.compacted {
            let message = format!("too old resource version: {} ({})", request.since, self.events.compacted);
            let gone = json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": message, "reason": "Expired", "code": 410 });
            // Sent before the sender is dropped, so the stream ends after it.
            let _ = sender.send(line("ERROR", &gone));
            return Answer { code: 200, body: Reply::Watch(stream) };
        } else {
            for event in self.events.events.iter().filter(|e| e.version > request.since) {
                if request.collection.covers(&event.collection)
                    && let Some(line) = event.line(&request.selector)
                {
                    lines.push(line);
                }
            }
            if request.bookmarks {
                lines.push(bookmark(self.version, false));
            }
        }
        for line in lines {
            let _ = sender.send(line);
        }
        self.events.watchers.push(Watcher { collection: request.collection, selector: request.selector, sender });
        Answer { code: 200, body: Reply::Watch(stream) }
    }
}
