//! Telling the store, off the hot path, which events' outputs the broker has confirmed.
//!
//! The store keeps an event's outputs until then, so that a redelivery after a crash publishes
//! them again; once they are confirmed, a duplicate of the event publishes nothing. The worker
//! acks without waiting for this: a crash before the store hears of it only means a later
//! duplicate publishes the same outputs again, with the same ids.
//!
//! A confirmation waits in the store (see [`Store::confirmed_later`]): the project's next
//! `apply` carries it to Redis at no extra call, which is how nearly all of them go while events
//! flow. What is still waiting [`FLUSH_AFTER`] later (the project went quiet) is written with
//! one `confirm` call per project and generation.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{RecordRef, Store};
use crate::backoff::Backoff;
use crate::contract::Id;

/// How often a confirmation is tried while Redis is unavailable before it is given up (its
/// record then keeps its outputs until the generation expires; nothing is lost).
const ATTEMPTS: u32 = 5;

/// How long a confirmation waits for its project's next `apply` before a call of its own
/// writes it. Long enough that a project with events in flight never needs one; short enough
/// that a crash soon after a quiet project's last event rarely finds its outputs unconfirmed
/// (which costs a republish with the same ids, nothing more).
const FLUSH_AFTER: Duration = Duration::from_millis(100);

/// What the worker tells once the broker confirmed an event's outputs.
pub struct Confirmations {
    store: Store,
    waiting: Arc<Notify>,
    closed: CancellationToken,
}

impl Confirmations {
    /// Starts the task that writes the confirmations no `apply` carried; it ends once
    /// [`close`] was called and everything confirmed before was written.
    ///
    /// [`close`]: Confirmations::close
    pub fn start(store: Store) -> (Confirmations, JoinHandle<()>) {
        let waiting = Arc::new(Notify::new());
        let closed = CancellationToken::new();
        let task = tokio::spawn(flush_confirmations(
            store.clone(),
            waiting.clone(),
            closed.clone(),
        ));
        let confirmations = Confirmations {
            store,
            waiting,
            closed,
        };
        (confirmations, task)
    }

    /// The broker confirmed the outputs of the event recorded at `record`.
    pub fn confirmed(&self, project: &Id, record: RecordRef) {
        if !self.closed.is_cancelled() {
            self.store.confirmed_later(project, record);
            self.waiting.notify_one();
        }
    }

    /// No more confirmations: the task writes what is still waiting and ends.
    pub fn close(&self) {
        self.closed.cancel();
    }
}

async fn flush_confirmations(store: Store, waiting: Arc<Notify>, closed: CancellationToken) {
    loop {
        tokio::select! {
            _ = waiting.notified() => {}
            _ = closed.cancelled() => break,
        }
        // The project's next call may carry them in the meantime.
        tokio::select! {
            _ = tokio::time::sleep(FLUSH_AFTER) => {}
            _ = closed.cancelled() => break,
        }
        flush(&store).await;
    }
    flush(&store).await;
}

/// Writes every confirmation still waiting, one call per project and generation.
async fn flush(store: &Store) {
    let pending = store.take_confirmed();
    let writes = pending
        .iter()
        .map(|(project, records)| confirm_with_retry(store, project, records));
    futures_util::future::join_all(writes).await;
}

async fn confirm_with_retry(store: &Store, project: &Id, records: &[RecordRef]) {
    let mut backoff = Backoff::outage();
    for attempt in 1..=ATTEMPTS {
        match store.confirm(project, records).await {
            Ok(()) => return,
            Err(error) if error.is_transient() && attempt < ATTEMPTS => {
                tokio::time::sleep(backoff.delay()).await;
            }
            Err(error) => {
                tracing::warn!(%error, project = %project, events = records.len(),
                    "confirmations not recorded; a duplicate of these events would publish their outputs again");
                return;
            }
        }
    }
}
