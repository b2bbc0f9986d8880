//! Telling the store, off the hot path, which events' outputs the broker has confirmed.
//!
//! The store keeps an event's outputs until then, so that a redelivery after a crash publishes
//! them again; once they are confirmed, a duplicate of the event publishes nothing. The worker
//! acks without waiting for this: a crash before the store hears of it only means a later
//! duplicate publishes the same outputs again, with the same ids. Confirmations that pile up
//! while one write is in flight go together in the next, one call per project and generation.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{RecordRef, Store};
use crate::backoff::Backoff;
use crate::contract::Id;

/// How often a confirmation is tried while Redis is unavailable before it is given up (its
/// record then keeps its outputs until the generation expires; nothing is lost).
const ATTEMPTS: u32 = 5;

/// The sending side; cheap to share.
pub struct Confirmations {
    sender: Mutex<Option<mpsc::UnboundedSender<(Id, RecordRef)>>>,
}

impl Confirmations {
    /// Starts the task that writes confirmations to `store`; it ends once [`close`] was called
    /// and everything sent before was written.
    ///
    /// [`close`]: Confirmations::close
    pub fn start(store: Store) -> (Confirmations, JoinHandle<()>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_confirmations(store, receiver));
        let confirmations = Confirmations {
            sender: Mutex::new(Some(sender)),
        };
        (confirmations, task)
    }

    /// The broker confirmed the outputs of the event recorded at `record`.
    pub fn confirmed(&self, project: &Id, record: RecordRef) {
        if let Some(sender) = self.sender.lock().expect("not poisoned").as_ref() {
            let _ = sender.send((project.clone(), record));
        }
    }

    /// No more confirmations: the task writes what it has and ends.
    pub fn close(&self) {
        self.sender.lock().expect("not poisoned").take();
    }
}

async fn write_confirmations(store: Store, mut receiver: mpsc::UnboundedReceiver<(Id, RecordRef)>) {
    while let Some(first) = receiver.recv().await {
        let mut by_project: HashMap<Id, Vec<RecordRef>> = HashMap::new();
        let mut add = |(project, record): (Id, RecordRef)| {
            by_project.entry(project).or_default().push(record);
        };
        add(first);
        while let Ok(more) = receiver.try_recv() {
            add(more);
        }
        let writes = by_project
            .iter()
            .map(|(project, records)| confirm_with_retry(&store, project, records));
        futures_util::future::join_all(writes).await;
    }
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
