//! The RabbitMQ edge: a session (one connection, a consuming channel and a confirming
//! publishing channel), the topology, and publishing with confirms.
//!
//! Recovery is by rebuilding: when anything on the connection fails, the session is dropped
//! (RabbitMQ requeues every unacknowledged event) and a new one is opened with backoff. lapin's
//! own auto-recovery is young; a fresh connection is simple and always correct, because every
//! event is idempotent.

pub mod acks;
mod blocking;
mod connect;
pub mod delay;
pub mod topology;

pub use blocking::Blocking;
pub use connect::open as open_connection;

use std::future::{poll_fn, Future};
use std::task::Poll;

use futures_util::future::maybe_done;

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer};

use crate::config::{Config, SettingError};

/// Header carrying the reason an event was dead-lettered.
pub const ERROR_HEADER: &str = "x-switchboard-error";

/// Why a broker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker refused (nacked) a publish")]
    Nacked,
    /// The broker answered nothing in that time (see `application::consume`).
    #[error("the broker did not answer within {0:?}")]
    Silent(std::time::Duration),
    /// A message sent to a queue by name found no such queue (deleted while the worker ran).
    #[error("no queue `{0}` to take a message sent to it; it is declared again with the session")]
    NoQueue(String),
    /// Credentials, permissions or certificates the broker (or this worker) refuses.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Settings(#[from] SettingError),
}

/// One connection to RabbitMQ with its two channels.
pub struct Session {
    connection: Connection,
    consume_channel: Channel,
    publisher: Publisher,
}

impl Session {
    /// Connects, declares the topology and prepares both channels.
    pub async fn open(config: &Config, name: &str) -> Result<Session, BrokerError> {
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(name.to_string()));
        let connection = connect::open(config, properties).await?;
        let consume_channel = connection.create_channel().await?;
        topology::declare(&consume_channel, config)
            .await
            .map_err(connect::declaration_conflict)?;
        consume_channel
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await?;
        let publish_channel = connection.create_channel().await?;
        publish_channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Session {
            connection,
            consume_channel,
            publisher: Publisher {
                channel: publish_channel,
            },
        })
    }

    /// What the broker says of this connection's publishing from now on (see
    /// [`Blocking`]): to be taken before the session first publishes, so that no notice goes
    /// unheard.
    pub fn blocking_notices(&self) -> futures_util::stream::BoxStream<'static, Blocking> {
        blocking::notices(&self.connection)
    }

    /// Acknowledgements of the deliveries of the consuming channel.
    pub fn acknowledgements(&self) -> acks::Acknowledgements {
        acks::Acknowledgements::new(self.consume_channel.clone())
    }

    /// Starts consuming `queue` (manual acks).
    pub async fn consume(&self, queue: &str, tag: &str) -> Result<Consumer, BrokerError> {
        Ok(self
            .consume_channel
            .basic_consume(
                queue.into(),
                tag.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?)
    }

    /// Follows everything published to `exchange` through a private, temporary queue (the
    /// demo and the tests watch the outbound exchange this way). Deliveries need no ack.
    pub async fn tap(&self, exchange: &str) -> Result<Consumer, BrokerError> {
        let queue = self
            .consume_channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        self.consume_channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(self
            .consume_channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?)
    }

    /// Takes the message at the head of `queue`, if any, without acknowledging it (it goes
    /// back to the queue unless [`Session::settle`] is called, at the latest when the session
    /// closes), with how many messages the queue still holds after it. For tools that look
    /// through a queue at their own pace (`switchboard dead-letters`), not for the worker.
    pub async fn take(
        &self,
        queue: &str,
    ) -> Result<Option<(lapin::message::Delivery, u32)>, BrokerError> {
        let got = self
            .consume_channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?;
        Ok(got.map(|message| (message.delivery, message.message_count)))
    }

    /// Acknowledges one message taken with [`Session::take`]: it leaves its queue for good.
    pub async fn settle(&self, delivery_tag: u64) -> Result<(), BrokerError> {
        self.consume_channel
            .basic_ack(delivery_tag, BasicAckOptions::default())
            .await?;
        Ok(())
    }

    /// Stops the consumer: no new deliveries; those in flight can still be acked.
    pub async fn cancel(&self, tag: &str) {
        let _ = self
            .consume_channel
            .basic_cancel(tag.into(), Default::default())
            .await;
    }

    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    pub async fn close(self) {
        let _ = self.connection.close(200, "worker stopping".into()).await;
    }
}

/// Publishes on a channel in confirm mode.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
}

/// One message to publish.
pub struct Message<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub properties: BasicProperties,
}

impl Publisher {
    /// Publishes every message, then waits until the broker has confirmed all of them.
    /// A message the broker refuses (a nack) is an error.
    pub async fn publish_all(&self, messages: Vec<Message<'_>>) -> Result<(), BrokerError> {
        if self.publish_confirmed(messages).await?.is_empty() {
            Ok(())
        } else {
            Err(BrokerError::Nacked)
        }
    }

    /// Publishes every message, then waits for the broker's answer to each: the positions of
    /// those it refused (nacked: a queue that rejects publishes when full, say), none when it
    /// took them all. Publishing them all before waiting lets the confirms of one batch arrive
    /// together.
    ///
    /// A message sent to a queue by name (the default exchange: a timer, a dead letter) is
    /// mandatory: with no such queue RabbitMQ would confirm it and drop it, so it gives it back
    /// instead, and that is [`BrokerError::NoQueue`]. Outputs are not: an outbound exchange
    /// that nobody listens to is not an error.
    pub async fn publish_confirmed(
        &self,
        messages: Vec<Message<'_>>,
    ) -> Result<Vec<usize>, BrokerError> {
        // lapin queues a message's frames when its publish is first polled, then waits until
        // its I/O thread has written them. Polling every publish in order, each time, queues
        // the whole batch (in order) before any wait: the I/O thread writes it in one go and
        // this task wakes once, not once per message (a wake-up per message was a large share
        // of a worker's CPU).
        let mut publishes: Vec<_> = messages
            .into_iter()
            .map(|message| {
                let options = BasicPublishOptions {
                    mandatory: message.exchange.is_empty(),
                    ..BasicPublishOptions::default()
                };
                Box::pin(maybe_done(self.channel.basic_publish(
                    message.exchange.into(),
                    message.routing_key.into(),
                    options,
                    message.body,
                    message.properties,
                )))
            })
            .collect();
        poll_fn(|context| {
            let mut pending = false;
            for publish in publishes.iter_mut() {
                pending |= publish.as_mut().poll(context).is_pending();
            }
            if pending {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await;
        let mut confirms = Vec::with_capacity(publishes.len());
        for publish in publishes.iter_mut() {
            let published = publish.as_mut().take_output();
            confirms.push(published.expect("every publish has completed")?);
        }
        let mut refused = Vec::new();
        for (position, confirm) in confirms.into_iter().enumerate() {
            match confirm.await? {
                Confirmation::Nack(_) => refused.push(position),
                Confirmation::Ack(Some(returned)) => {
                    return Err(BrokerError::NoQueue(
                        returned.delivery.routing_key.to_string(),
                    ))
                }
                Confirmation::Ack(None) | Confirmation::NotRequested => {}
            }
        }
        Ok(refused)
    }
}

/// Persistent JSON message properties.
pub fn json_properties() -> BasicProperties {
    BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_delivery_mode(2)
}

/// Properties of a timer message: persistent JSON with its due time.
pub fn timer_properties(due_ms: i64) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(delay::DUE_HEADER.into(), AMQPValue::LongLongInt(due_ms));
    json_properties().with_headers(headers)
}

/// The due time of a timer message, if it is one.
pub fn timer_due(properties: &BasicProperties) -> Option<i64> {
    match properties
        .headers()
        .as_ref()?
        .inner()
        .get(delay::DUE_HEADER)?
    {
        AMQPValue::LongLongInt(due) => Some(*due),
        AMQPValue::LongInt(due) => Some(*due as i64),
        _ => None,
    }
}

/// The original properties plus the dead-letter reason header, persistent.
pub fn dead_letter_properties(original: &BasicProperties, reason: &str) -> BasicProperties {
    let mut headers = original.headers().clone().unwrap_or_default();
    headers.insert(
        ERROR_HEADER.into(),
        AMQPValue::LongString(LongString::from(reason.to_string())),
    );
    original.clone().with_headers(headers).with_delivery_mode(2)
}

/// A header's value, when it is text (`x-switchboard-error`, RabbitMQ's `x-first-death-*`).
pub fn header_text(properties: &BasicProperties, name: &str) -> Option<String> {
    match properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(text) => Some(text.to_string()),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

/// Header counting how many times a dead letter was sent back to the work queue
/// (`switchboard dead-letters --replay`).
pub const REPLAYS_HEADER: &str = "x-switchboard-replays";

/// Why a message is in the dead-letter queue: the worker's reason (`x-switchboard-error`), or
/// else RabbitMQ's own (`x-first-death-reason`: `delivery_limit` for an event that was
/// delivered `SWITCHBOARD_DELIVERY_LIMIT` times without being settled, a poison event).
pub fn dead_letter_reason(properties: &BasicProperties) -> String {
    let text = |name: &str| header_text(properties, name);
    if let Some(reason) = text(ERROR_HEADER) {
        return reason;
    }
    match (text("x-first-death-reason"), text("x-first-death-queue")) {
        (Some(reason), Some(queue)) => {
            format!("dead-lettered by RabbitMQ: {reason} (queue {queue})")
        }
        (Some(reason), None) => format!("dead-lettered by RabbitMQ: {reason}"),
        _ => "no reason recorded".into(),
    }
}

/// A dead letter's properties as it goes back to the work queue: the original ones without
/// the worker's reason (a new rejection writes its own), counting the replay in
/// [`REPLAYS_HEADER`], persistent. RabbitMQ's `x-death` history stays.
pub fn replay_properties(dead: &BasicProperties) -> BasicProperties {
    let mut inner = dead
        .headers()
        .as_ref()
        .map(|headers| headers.inner().clone())
        .unwrap_or_default();
    inner.remove(ERROR_HEADER);
    let replays = match inner.get(REPLAYS_HEADER) {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        _ => 0,
    };
    let mut headers = FieldTable::from(inner);
    headers.insert(REPLAYS_HEADER.into(), AMQPValue::LongLongInt(replays + 1));
    dead.clone().with_headers(headers).with_delivery_mode(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(name: &str, value: &str) -> BasicProperties {
        let mut headers = FieldTable::default();
        headers.insert(name.into(), AMQPValue::LongString(value.into()));
        json_properties().with_headers(headers)
    }

    #[test]
    fn a_dead_letters_reason_is_the_workers_else_rabbitmqs() {
        let rejected = dead_letter_properties(&json_properties(), "invalid_id: bad");
        assert_eq!(dead_letter_reason(&rejected), "invalid_id: bad");
        let mut poison = with_header("x-first-death-reason", "delivery_limit");
        let mut headers = poison.headers().clone().unwrap();
        headers.insert(
            "x-first-death-queue".into(),
            AMQPValue::LongString("sb.work".into()),
        );
        poison = poison.with_headers(headers);
        assert_eq!(
            dead_letter_reason(&poison),
            "dead-lettered by RabbitMQ: delivery_limit (queue sb.work)"
        );
        assert_eq!(dead_letter_reason(&json_properties()), "no reason recorded");
    }

    #[test]
    fn a_replay_drops_the_reason_and_counts_itself() {
        let dead = dead_letter_properties(&with_header("x-custom", "kept"), "store: boom");
        let once = replay_properties(&dead);
        let headers = once.headers().clone().unwrap();
        assert!(headers.inner().get(ERROR_HEADER).is_none());
        assert_eq!(
            headers.inner().get("x-custom"),
            Some(&AMQPValue::LongString("kept".into()))
        );
        assert_eq!(
            headers.inner().get(REPLAYS_HEADER),
            Some(&AMQPValue::LongLongInt(1))
        );
        let twice = replay_properties(&dead_letter_properties(&once, "again"));
        assert_eq!(
            twice.headers().clone().unwrap().inner().get(REPLAYS_HEADER),
            Some(&AMQPValue::LongLongInt(2))
        );
        assert_eq!(*twice.delivery_mode(), Some(2));
    }
}
