//! Timers as RabbitMQ delay queues.
//!
//! A timer is a message published to `<work queue>.delay.<ms>`: a durable classic queue whose
//! every message lives exactly `<ms>` (queue-wide `x-message-ttl`, so expiry is in publish
//! order) and is then dead-lettered into the work queue, where any worker applies it like any
//! other event. Why this rather than a Redis due-set that workers poll:
//! - nothing polls: the broker delivers a timer when it is due, to one worker;
//! - it survives worker restarts and crashes (persistent message, durable queue) and fires
//!   while the worker that armed it is down;
//! - a timer that fires twice (redelivery) is deduplicated by its id like any event, and its
//!   token makes a stale timer harmless;
//! - it is armed together with the outputs, before the causing event is acked, so a crash in
//!   between re-arms it on redelivery.
//!
//! There is one queue per distinct delay (a project setting, so few). The queues have no
//! `x-expires`: an idle queue may still hold timers, and expiry would drop them.

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::Channel;

/// The delay queue for `delay_ms`.
pub fn queue_name(work_queue: &str, delay_ms: u64) -> String {
    format!("{work_queue}.delay.{delay_ms}")
}

pub fn arguments(work_queue: &str, delay_ms: u64) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("classic")));
    args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(delay_ms as i64));
    args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(LongString::from("")));
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(work_queue)),
    );
    args
}

pub async fn declare(channel: &Channel, work_queue: &str, delay_ms: u64) -> lapin::Result<()> {
    channel
        .queue_declare(
            queue_name(work_queue, delay_ms).as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments(work_queue, delay_ms),
        )
        .await
        .map(|_| ())
}
