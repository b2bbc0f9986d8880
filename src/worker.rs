//! Inbound events, start to finish: decode → decide (store) → publish with confirms → ack.
//! Events that arrive together are handled as a batch: one store call per project, one round of
//! confirms for all their outputs, then each event's own ack.
//!
//! The order is what makes a crash harmless: an event is acknowledged only after every output
//! it caused is confirmed by the broker. A worker that dies anywhere before the ack leaves the
//! event to be redelivered, and the store replays the outputs it recorded the first time, with
//! the same ids, instead of deciding again.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use lapin::message::Delivery;
use lapin::types::ShortString;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use crate::backlog::Backlog;
use crate::backoff::Backoff;
use crate::broker::acks::Acknowledgements;
use crate::broker::{self, Message, Publisher};
use crate::clock::{rfc3339, Clock};
use crate::config::Config;
use crate::contract::{decode, outbound, InboundEvent};
use crate::http::Readiness;
use crate::store::confirmations::Confirmations;
use crate::store::{Applied, Delivered, Store, StoreError};
use crate::telemetry::{EventApplied, EventDeadLettered, PublishRefused, StoreUnavailable};

/// Everything needed to handle an event; shared by all in-flight events of a worker.
pub struct Worker {
    pub config: Arc<Config>,
    pub store: Store,
    /// Projects seen lately, whose waiting queues `/metrics` reports.
    pub backlog: Arc<Backlog>,
    pub clock: Arc<dyn Clock>,
    pub readiness: Arc<Readiness>,
    /// Cancelled when the worker is stopping: retries give up and leave the event unacked.
    pub shutdown: CancellationToken,
    /// Tells the store which events' outputs the broker confirmed (see `store::confirmations`).
    pub confirmations: Confirmations,
}

/// The broker side of one delivery: where to publish, and a token to cancel when the session
/// turned out to be broken (so the consumer loop rebuilds it).
pub struct DeliveryContext {
    pub publisher: Publisher,
    /// Acknowledges the session's deliveries in order, many in one frame.
    pub acks: Acknowledgements,
    pub session_failed: CancellationToken,
}

/// A batch's turn to be decided: held from the moment the batch is taken off the consumer until
/// the store has answered for it (see `application::consume`), then given back so the next
/// batch can form while this one's outputs are published and confirmed.
pub struct DecisionSlot(Option<OwnedSemaphorePermit>);

impl DecisionSlot {
    pub fn new(permit: OwnedSemaphorePermit) -> Self {
        DecisionSlot(Some(permit))
    }

    /// Gives the slot back (once; later calls do nothing).
    fn release(&mut self) {
        self.0.take();
    }
}

/// An event applied by the store, with what it takes to publish its outputs.
struct Decided<'a> {
    delivery: &'a Delivery,
    event: &'a InboundEvent,
    applied: Applied,
    /// The outputs' bodies, in order.
    bodies: Vec<Vec<u8>>,
    /// Each timer's delay queue, due time and body.
    timers: Vec<(String, i64, Vec<u8>)>,
}

impl Worker {
    /// Handles deliveries that arrived together (one, when the queue is quiet). Never panics
    /// on bad input; never acks what was not done. A panic is a bug: the events of the batch not
    /// yet settled are then handled again one by one, and only one that panics alone goes back
    /// to the queue (and, at the delivery limit, to dead letters), so its neighbours in the
    /// batch do not share its fate.
    pub async fn handle(
        &self,
        deliveries: Vec<Delivery>,
        broker: &DeliveryContext,
        slot: &mut DecisionSlot,
    ) {
        let whole = AssertUnwindSafe(self.handle_batch(&deliveries, broker, slot))
            .catch_unwind()
            .await;
        if whole.is_ok() {
            return;
        }
        if deliveries.len() > 1 {
            tracing::error!(
                events = deliveries.len(),
                "handling a batch panicked; handling its events one by one"
            );
            for delivery in &deliveries {
                if broker.acks.is_settled(delivery.delivery_tag).await {
                    continue;
                }
                let alone = std::slice::from_ref(delivery);
                let handled = AssertUnwindSafe(self.handle_batch(alone, broker, slot))
                    .catch_unwind()
                    .await;
                if handled.is_err() {
                    return_to_queue(delivery, broker).await;
                }
            }
        } else {
            return_to_queue(&deliveries[0], broker).await;
        }
    }

    /// decode → decide (one store call per project) → publish every output with confirms → ack
    /// each event.
    async fn handle_batch(
        &self,
        deliveries: &[Delivery],
        broker: &DeliveryContext,
        slot: &mut DecisionSlot,
    ) {
        let mut events: Vec<(&Delivery, InboundEvent)> = Vec::with_capacity(deliveries.len());
        // Deliveries that only go elsewhere: malformed ones to dead letters, timers that came
        // back early to a delay queue. They need no decision, so they go alongside the batch's
        // (or, with none, after giving the slot back) and wait for neither it nor Redis.
        let mut malformed = Vec::new();
        let mut early_timers = Vec::new();
        for delivery in deliveries {
            match decode(&delivery.data) {
                Ok(event) => match self.early_timer(&event, delivery) {
                    Some(timing) => early_timers.push((delivery, timing)),
                    None => events.push((delivery, event)),
                },
                Err(rejection) => malformed.push((delivery, rejection)),
            }
        }
        let decide = async {
            if events.is_empty() {
                slot.release();
                return None;
            }
            let started = Instant::now();
            let results = self.apply_by_project(&events).await;
            let decision = started.elapsed();
            slot.release();
            Some((results, decision))
        };
        let set_aside = async {
            for (delivery, rejection) in &malformed {
                let reason = rejection.to_string();
                let event_type = peek_type(&delivery.data);
                let rejected = Rejected {
                    reason: &reason,
                    kind: rejection.kind(),
                    event_type: event_type.as_deref(),
                    event: None,
                };
                self.dead_letter(delivery, broker, rejected).await;
            }
            for &(delivery, timing) in &early_timers {
                self.forward_timer(delivery, timing, broker).await;
            }
        };
        let (decided, ()) = futures_util::future::join(decide, set_aside).await;
        let Some((results, decision)) = decided else {
            return;
        };
        let mut decided = Vec::with_capacity(events.len());
        for ((delivery, event), result) in events.iter().zip(results) {
            let applied = match result {
                Some(Ok(applied)) => applied,
                Some(Err(error)) => {
                    // A failure that retrying cannot fix: keep the event, with the reason.
                    let reason = format!("internal error: {error}");
                    let rejected = Rejected {
                        reason: &reason,
                        kind: "internal",
                        event_type: Some(event.kind.type_name()),
                        event: Some(event),
                    };
                    self.dead_letter(delivery, broker, rejected).await;
                    continue;
                }
                None => continue, // stopping while Redis is away: left for redelivery
            };
            self.backlog.saw(&event.project);
            decided.push(self.prepare(delivery, event, applied));
        }
        let messages = || {
            let mut messages = Vec::new();
            for one in &decided {
                self.messages(one, &mut messages);
            }
            messages
        };
        if !self.publish(messages, broker, "outputs").await {
            return;
        }
        let tags: Vec<u64> = decided
            .iter()
            .map(|one| one.delivery.delivery_tag)
            .collect();
        // Confirmed: the store may forget the outputs it kept for a replay.
        for one in &decided {
            if one.applied.awaits_confirmation() {
                self.confirmations
                    .confirmed(&one.event.project, one.applied.record.clone());
            }
        }
        let newly = self.ack(&tags, broker).await;
        for (one, newly) in decided.iter().zip(newly) {
            if newly {
                EventApplied {
                    project: one.event.project.as_str(),
                    event_id: &one.event.id,
                    event_type: one.event.kind.type_name(),
                    conversation_id: one.event.kind.conversation_id().map(|c| c.as_str()),
                    outcome: one.applied.outcome,
                    decision,
                    outputs: &one.applied.outputs,
                }
                .emit();
            }
        }
    }

    /// Applies the events, one store call per project (a cluster keeps each project on one
    /// node), the projects side by side; the results are in the events' order. An event the
    /// store fails on is an error of its own (dead-lettered); `None` for events left for
    /// redelivery because the worker is stopping while Redis is away.
    async fn apply_by_project(
        &self,
        events: &[(&Delivery, InboundEvent)],
    ) -> Vec<Option<Result<Applied, StoreError>>> {
        // Indices of each project's events, projects in order of first appearance.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, (_, event)) in events.iter().enumerate() {
            match groups
                .iter_mut()
                .find(|group| events[group[0]].1.project == event.project)
            {
                Some(group) => group.push(i),
                None => groups.push(vec![i]),
            }
        }
        let by_group = futures_util::future::join_all(groups.iter().map(|group| async move {
            let batch: Vec<Delivered> = group
                .iter()
                .map(|&i| Delivered {
                    event: &events[i].1,
                    redelivered: events[i].0.redelivered,
                })
                .collect();
            match self.apply_with_retry(&batch).await {
                Some(Ok(results)) => results.into_iter().map(Some).collect(),
                // The reply could not be read: nothing says which event is at fault, so each
                // is tried alone.
                Some(Err(error)) if batch.len() > 1 => {
                    tracing::warn!(%error, events = batch.len(), "a batch failed; applying its events one by one");
                    let mut results = Vec::with_capacity(batch.len());
                    for delivered in batch {
                        let one = self.apply_with_retry(&[delivered]).await;
                        results.push(one.map(|result| result.and_then(|mut r| r.remove(0))));
                    }
                    results
                }
                Some(Err(error)) => vec![Some(Err(error))],
                None => batch.iter().map(|_| None).collect(),
            }
        }))
        .await;
        let mut results: Vec<Option<Result<Applied, StoreError>>> =
            events.iter().map(|_| None).collect();
        for (group, applied) in groups.iter().zip(by_group) {
            for (&i, result) in group.iter().zip(applied) {
                results[i] = result;
            }
        }
        results
    }

    /// Encodes an applied event's outputs and picks its timers' delay queues.
    fn prepare<'a>(
        &self,
        delivery: &'a Delivery,
        event: &'a InboundEvent,
        applied: Applied,
    ) -> Decided<'a> {
        let time = rfc3339(applied.time_ms);
        let bodies: Vec<Vec<u8>> = applied
            .outputs
            .iter()
            .enumerate()
            .map(|(i, output)| outbound::envelope(&event.project, &event.id, i, &time, output))
            .collect();
        // Timers are due relative to when the event was first applied, so a replay re-arms
        // them for the same instant.
        let now = self.clock.now_ms();
        let mut timers = Vec::with_capacity(applied.timers.len());
        for timer in &applied.timers {
            let due = applied.time_ms + timer.delay_ms as i64;
            let real_wait = self.clock.to_real_ms(due - now).max(0);
            let queue = self.delay_queue(real_wait as u64);
            // A timer's `time` is when it is due: a schedule's switch is an event about the
            // agent's status at that instant (see the store's order of events).
            timers.push((
                queue,
                due,
                outbound::timer_event(&event.project, timer, &rfc3339(due)),
            ));
        }
        Decided {
            delivery,
            event,
            applied,
            bodies,
            timers,
        }
    }

    /// The messages that publish one applied event's outputs and arm its timers.
    fn messages<'a>(&'a self, decided: &'a Decided<'_>, messages: &mut Vec<Message<'a>>) {
        let Decided {
            event,
            applied,
            bodies,
            timers,
            ..
        } = decided;
        messages.extend(applied.outputs.iter().zip(bodies).enumerate().map(
            |(i, (output, body))| {
                Message {
                    exchange: &self.config.outbound_exchange,
                    routing_key: &output.event_type,
                    body,
                    properties: broker::json_properties()
                        .with_message_id(ShortString::from(
                            outbound::output_id(&event.project, &event.id, i).to_string(),
                        ))
                        .with_type(ShortString::from(output.event_type.as_str())),
                }
            },
        ));
        messages.extend(timers.iter().map(|(queue, due, body)| Message {
            exchange: "",
            routing_key: queue,
            body,
            properties: broker::timer_properties(*due),
        }));
    }

    /// The due time of a timer that arrives before it (it climbed down the delay ladder), and the
    /// real time that remains until then (ms): such a timer is not applied yet but sent on to the
    /// step that fits what remains (`forward_timer`).
    fn early_timer(&self, event: &InboundEvent, delivery: &Delivery) -> Option<(i64, i64)> {
        if event.kind.type_name() != crate::contract::inbound::TIMER_FIRED {
            return None;
        }
        let due = broker::timer_due(&delivery.properties)?;
        let remaining = self.clock.to_real_ms(due - self.clock.now_ms());
        (remaining > broker::delay::DUE_TOLERANCE_MS).then_some((due, remaining))
    }

    /// Sends an early timer on to the delay queue that fits the `remaining` real time until
    /// `due` (see `early_timer`), and acks it.
    async fn forward_timer(
        &self,
        delivery: &Delivery,
        (due, remaining): (i64, i64),
        broker: &DeliveryContext,
    ) {
        let queue = self.delay_queue(remaining as u64);
        let message = || {
            vec![Message {
                exchange: "",
                routing_key: &queue,
                body: &delivery.data,
                properties: broker::timer_properties(due),
            }]
        };
        if !self.publish(message, broker, "a timer sent on").await {
            return;
        }
        self.ack(&[delivery.delivery_tag], broker).await;
    }

    /// The delay queue for a timer due in `real_wait_ms` (declared with the session's
    /// topology, like every step of the ladder).
    fn delay_queue(&self, real_wait_ms: u64) -> String {
        broker::delay::queue_name(
            &self.config.work_queue,
            broker::delay::ladder_step(real_wait_ms),
        )
    }

    /// Applies events of one project, waiting out Redis outages with backoff. `None` when the
    /// worker is stopping before Redis came back.
    async fn apply_with_retry(
        &self,
        events: &[Delivered<'_>],
    ) -> Option<Result<Vec<Result<Applied, StoreError>>, StoreError>> {
        let mut backoff = Backoff::new(STORE_RETRY_FIRST, STORE_RETRY_LONGEST);
        loop {
            match self.store.apply_batch(events, self.clock.now_ms()).await {
                Ok(applied) => {
                    self.readiness.set_redis(true);
                    return Some(Ok(applied));
                }
                Err(error) if error.is_transient() => {
                    self.readiness.set_redis(false);
                    StoreUnavailable {
                        error: &error,
                        retry_in: backoff.peek(),
                    }
                    .emit();
                    if !backoff.sleep(&self.shutdown).await {
                        return None;
                    }
                }
                Err(error) => return Some(Err(error)),
            }
        }
    }

    /// Sends the untouched body to the dead-letter queue with the reason, then acks it.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        broker: &DeliveryContext,
        rejected: Rejected<'_>,
    ) {
        let message = || {
            vec![Message {
                exchange: "",
                routing_key: &self.config.dead_letter_queue,
                body: &delivery.data,
                properties: broker::dead_letter_properties(&delivery.properties, rejected.reason),
            }]
        };
        if !self.publish(message, broker, "a dead letter").await {
            return;
        }
        if self.ack(&[delivery.delivery_tag], broker).await[0] {
            EventDeadLettered {
                kind: rejected.kind,
                reason: rejected.reason,
                event_type: rejected.event_type,
                project: rejected.event.map(|e| e.project.as_str()),
                event_id: rejected.event.map(|e| e.id.as_str()),
            }
            .emit();
        }
    }

    /// Publishes what `build` makes, with confirms. What the broker refuses (a nack: a queue of
    /// the platform's that rejects publishes when full, a quorum queue short of its quorum) is
    /// made and published again, with backoff, until the broker takes it. The events wait
    /// unacked meanwhile: a refusal that is no fault of theirs must not redeliver them, which
    /// would take them towards the delivery limit and dead letters. The worker is not ready
    /// while it waits so (`/readyz`: `refusing publishes`). False when the session
    /// failed (the events will be redelivered) or the worker is stopping (they are left to the
    /// broker).
    async fn publish<'m>(
        &self,
        build: impl Fn() -> Vec<Message<'m>>,
        broker: &DeliveryContext,
        what: &str,
    ) -> bool {
        let mut backoff = Backoff::new(PUBLISH_RETRY_FIRST, PUBLISH_RETRY_LONGEST);
        // The positions, in what `build` makes, still to publish (ascending); None: all.
        let mut pending: Option<Vec<usize>> = None;
        // Held while the broker refuses some of them: not ready meanwhile.
        let mut refusal = None;
        loop {
            let mut messages = build();
            if let Some(positions) = &pending {
                messages = messages
                    .into_iter()
                    .enumerate()
                    .filter(|(position, _)| positions.binary_search(position).is_ok())
                    .map(|(_, message)| message)
                    .collect();
            }
            match broker.publisher.publish_confirmed(messages).await {
                Ok(refused) if refused.is_empty() => return true,
                Ok(refused) => {
                    let refused: Vec<usize> = match &pending {
                        Some(positions) => refused.iter().map(|&i| positions[i]).collect(),
                        None => refused,
                    };
                    PublishRefused {
                        what,
                        messages: refused.len(),
                        retry_in: backoff.peek(),
                    }
                    .emit();
                    refusal.get_or_insert_with(|| self.readiness.publish_refused());
                    pending = Some(refused);
                    if !backoff.sleep(&self.shutdown).await {
                        return false;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "publishing {what} failed; the events will be redelivered");
                    broker.session_failed.cancel();
                    return false;
                }
            }
        }
    }

    /// Settles deliveries whose work is done, in one frame when it can (see `broker::acks`).
    /// For each, true when it was not settled before.
    async fn ack(&self, delivery_tags: &[u64], broker: &DeliveryContext) -> Vec<bool> {
        match broker.acks.ack(delivery_tags).await {
            Ok(newly) => newly,
            Err(error) => {
                tracing::warn!(%error, "ack failed; the events will be redelivered");
                broker.session_failed.cancel();
                vec![false; delivery_tags.len()]
            }
        }
    }
}

/// How soon a store call that met an outage is tried again, at first and at the longest: the
/// events wait in memory meanwhile, unacknowledged.
const STORE_RETRY_FIRST: Duration = Duration::from_millis(50);
const STORE_RETRY_LONGEST: Duration = Duration::from_secs(2);

/// How soon messages the broker refused are published again, at first and at the longest.
const PUBLISH_RETRY_FIRST: Duration = Duration::from_millis(50);
const PUBLISH_RETRY_LONGEST: Duration = Duration::from_secs(2);

/// Why an event goes to dead letters.
struct Rejected<'a> {
    reason: &'a str,
    kind: &'static str,
    event_type: Option<&'a str>,
    /// The event, when it could be decoded.
    event: Option<&'a InboundEvent>,
}

/// Returns an event whose handling panicked to the queue. A poison event comes back until the
/// queue's delivery limit dead-letters it.
async fn return_to_queue(delivery: &Delivery, broker: &DeliveryContext) {
    tracing::error!("handling an event panicked; returning it to the queue");
    if let Err(error) = broker.acks.requeue(delivery.delivery_tag).await {
        tracing::warn!(%error, "returning an event to the queue failed; the broker redelivers it");
        broker.session_failed.cancel();
    }
}

/// The `type` of a body that failed validation, if it has one (for the metrics label).
fn peek_type(body: &[u8]) -> Option<String> {
    if body.len() > crate::contract::MAX_EVENT_BYTES {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.get("type")?.as_str().map(String::from)
}
