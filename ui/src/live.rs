//! Live updates: `GET /api/v1/events`, a server-sent event stream that says `change` whenever
//! the source's generation changes (a policy file edited, added or removed; a deploy recorded).
//! The source is polled once a second, as `aptc watch` polls: no file-watching dependency.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};

use crate::source::Source;

/// How often the source is asked.
const POLL: Duration = Duration::from_secs(1);

/// The stream: the generation now (`hello`), then each new one (`change`).
pub fn events(source: Arc<dyn Source>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = stream::unfold((source, None::<String>), |(source, last)| async move {
        loop {
            if last.is_some() {
                tokio::time::sleep(POLL).await;
            }
            let asked = source.clone();
            let now = tokio::task::spawn_blocking(move || asked.generation()).await.unwrap_or_default();
            if last.as_deref() == Some(now.as_str()) {
                continue;
            }
            let name = if last.is_none() { "hello" } else { "change" };
            let event = Event::default().event(name).data(now.clone());
            return Some((Ok(event), (source, Some(now))));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
