//! One inbound event, start to finish: decode → decide (store) → publish with confirms → ack.
//!
//! The order is what makes a crash harmless: the event is acknowledged only after every output
//! it caused is confirmed by the broker. A worker that dies anywhere before the ack leaves the
//! event to be redelivered, and the store replays the outputs it recorded the first time, with
//! the same ids, instead of deciding again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::types::ShortString;
use tokio_util::sync::CancellationToken;

use crate::backlog::Backlog;
use crate::broker::{self, Message, Publisher};
use crate::clock::{rfc3339, Clock};
use crate::config::Config;
use crate::contract::{decode, outbound, InboundEvent};
use crate::http::Readiness;
use crate::store::{Applied, Store, StoreError};
use crate::telemetry::{EventApplied, EventDeadLettered, StoreUnavailable};

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
}

/// The broker side of one delivery: where to publish, and a token to cancel when the session
/// turned out to be broken (so the consumer loop rebuilds it).
pub struct DeliveryContext {
    pub publisher: Publisher,
    pub session_failed: CancellationToken,
}

impl Worker {
    /// Handles one delivery. Never panics on bad input; never acks what was not done.
    pub async fn handle(&self, delivery: Delivery, broker: &DeliveryContext) {
        let event = match decode(&delivery.data) {
            Ok(event) => event,
            Err(rejection) => {
                let reason = rejection.to_string();
                let kind = rejection.kind();
                let event_type = peek_type(&delivery.data);
                self.dead_letter(
                    &delivery,
                    broker,
                    &reason,
                    kind,
                    event_type.as_deref(),
                    None,
                )
                .await;
                return;
            }
        };
        if event.kind.type_name() == crate::contract::inbound::TIMER_FIRED
            && self.forward_early_timer(&delivery, broker).await
        {
            return;
        }
        let started = Instant::now();
        let applied = match self.apply_with_retry(&event).await {
            Some(Ok(applied)) => applied,
            Some(Err(error)) => {
                // A failure that retrying cannot fix: keep the event, with the reason.
                let reason = format!("internal error: {error}");
                self.dead_letter(
                    &delivery,
                    broker,
                    &reason,
                    "internal",
                    Some(event.kind.type_name()),
                    Some(&event),
                )
                .await;
                return;
            }
            None => return, // stopping while Redis is away: left for redelivery
        };
        let decision = started.elapsed();
        self.backlog.saw(&event.project);
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
        let mut timers: Vec<(String, i64, Vec<u8>)> = Vec::with_capacity(applied.timers.len());
        for timer in &applied.timers {
            let due = applied.time_ms + timer.delay_ms as i64;
            let real_wait = self.clock.to_real_ms(due - now).max(0);
            let Some(queue) = self.delay_queue(real_wait as u64, broker).await else {
                return;
            };
            timers.push((
                queue,
                due,
                outbound::timer_event(&event.project, timer, &time),
            ));
        }
        let mut messages: Vec<Message> = applied
            .outputs
            .iter()
            .zip(&bodies)
            .enumerate()
            .map(|(i, (output, body))| Message {
                exchange: &self.config.outbound_exchange,
                routing_key: &output.event_type,
                body,
                properties: broker::json_properties()
                    .with_message_id(ShortString::from(
                        outbound::output_id(&event.project, &event.id, i).to_string(),
                    ))
                    .with_type(ShortString::from(output.event_type.as_str())),
            })
            .collect();
        messages.extend(timers.iter().map(|(queue, due, body)| Message {
            exchange: "",
            routing_key: queue,
            body,
            properties: broker::timer_properties(*due),
        }));
        if let Err(error) = broker.publisher.publish_all(messages).await {
            tracing::warn!(%error, event_id = event.id, "publishing outputs failed; the event will be redelivered");
            broker.session_failed.cancel();
            return;
        }
        if self.ack(&delivery, broker).await {
            EventApplied {
                project: event.project.as_str(),
                event_id: &event.id,
                event_type: event.kind.type_name(),
                conversation_id: event.kind.conversation_id().map(|c| c.as_str()),
                replayed: applied.replayed,
                decision,
                outputs: &applied.outputs,
            }
            .emit();
        }
    }

    /// A timer that arrives before its due time (it climbed down the delay ladder) is sent on to
    /// the step that fits what remains, and acked. True when it was.
    async fn forward_early_timer(&self, delivery: &Delivery, broker: &DeliveryContext) -> bool {
        let Some(due) = broker::timer_due(&delivery.properties) else {
            return false;
        };
        let remaining = self.clock.to_real_ms(due - self.clock.now_ms());
        if remaining <= broker::delay::DUE_TOLERANCE_MS {
            return false;
        }
        let Some(queue) = self.delay_queue(remaining as u64, broker).await else {
            return true;
        };
        let message = Message {
            exchange: "",
            routing_key: &queue,
            body: &delivery.data,
            properties: broker::timer_properties(due),
        };
        if let Err(error) = broker.publisher.publish_all(vec![message]).await {
            tracing::warn!(%error, "forwarding a timer failed; it will be redelivered");
            broker.session_failed.cancel();
            return true;
        }
        self.ack(delivery, broker).await;
        true
    }

    /// The delay queue for a timer due in `real_wait_ms`, declared if this session has not yet.
    /// `None` (the session is marked failed) when declaring failed.
    async fn delay_queue(&self, real_wait_ms: u64, broker: &DeliveryContext) -> Option<String> {
        match broker
            .publisher
            .delay_queue(&self.config.work_queue, real_wait_ms)
            .await
        {
            Ok(queue) => Some(queue),
            Err(error) => {
                tracing::warn!(%error, "declaring a delay queue failed; the event will be redelivered");
                broker.session_failed.cancel();
                None
            }
        }
    }

    /// Applies the event, waiting out Redis outages with backoff. `None` when the worker is
    /// stopping before Redis came back.
    async fn apply_with_retry(&self, event: &InboundEvent) -> Option<Result<Applied, StoreError>> {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.store.apply(event, self.clock.now_ms()).await {
                Ok(applied) => {
                    self.readiness.set_redis(true);
                    return Some(Ok(applied));
                }
                Err(error) if error.is_transient() => {
                    self.readiness.set_redis(false);
                    StoreUnavailable {
                        error: &error,
                        retry_in: backoff,
                    }
                    .emit();
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(2));
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
        reason: &str,
        kind: &'static str,
        event_type: Option<&str>,
        event: Option<&InboundEvent>,
    ) {
        let message = Message {
            exchange: "",
            routing_key: &self.config.dead_letter_queue,
            body: &delivery.data,
            properties: broker::dead_letter_properties(&delivery.properties, reason),
        };
        if let Err(error) = broker.publisher.publish_all(vec![message]).await {
            tracing::warn!(%error, "dead-lettering failed; the event will be redelivered");
            broker.session_failed.cancel();
            return;
        }
        if self.ack(delivery, broker).await {
            EventDeadLettered {
                kind,
                reason,
                event_type,
                project: event.map(|e| e.project.as_str()),
                event_id: event.map(|e| e.id.as_str()),
            }
            .emit();
        }
    }

    async fn ack(&self, delivery: &Delivery, broker: &DeliveryContext) -> bool {
        match delivery.acker.ack(BasicAckOptions::default()).await {
            Ok(_) => true,
            Err(error) => {
                tracing::warn!(%error, "ack failed; the event will be redelivered");
                broker.session_failed.cancel();
                false
            }
        }
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
