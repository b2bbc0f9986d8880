//! The exchanges and queues of the contract, declared idempotently by every worker at start and
//! after every reconnection; and deleted, for the private topologies of tests, the benchmark
//! and `simulate`.

use futures_util::future::{join_all, try_join_all};
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use super::delay;
use crate::config::Config;

/// The work queue's arguments: a quorum queue that dead-letters (at least once) into the dead
/// letter queue after `delivery_limit` deliveries, so a poison event cannot loop forever.
pub fn work_queue_arguments(config: &Config) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args.insert("x-dead-letter-exchange".into(), long_string(""));
    args.insert(
        "x-dead-letter-routing-key".into(),
        long_string(&config.dead_letter_queue),
    );
    args.insert(
        "x-dead-letter-strategy".into(),
        long_string("at-least-once"),
    );
    // At-least-once dead-lettering requires rejecting publishes rather than dropping heads.
    args.insert("x-overflow".into(), long_string("reject-publish"));
    args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(config.delivery_limit as i64),
    );
    args
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares both exchanges, both queues, the binding and the timer ladder's delay queues.
///
/// The delay queues are declared here, with the rest, rather than when a timer first needs one:
/// a queue of that name declared otherwise (RabbitMQ refuses the declaration until someone
/// acts) then keeps the worker from consuming, not ready and saying so, instead of failing
/// the session at every event that arms a timer of that step. They are 22 declarations, of
/// queues that usually exist already, sent together so that they cost a session about one
/// round trip to the broker, not 22 (a managed broker may be tens of milliseconds away).
pub async fn declare(channel: &Channel, config: &Config) -> lapin::Result<()> {
    for exchange in [&config.inbound_exchange, &config.outbound_exchange] {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                durable_exchange(),
                FieldTable::default(),
            )
            .await?;
    }
    let mut dead_args = FieldTable::default();
    dead_args.insert("x-queue-type".into(), long_string("quorum"));
    channel
        .queue_declare(
            config.dead_letter_queue.as_str().into(),
            durable_queue(),
            dead_args,
        )
        .await?;
    channel
        .queue_declare(
            config.work_queue.as_str().into(),
            durable_queue(),
            work_queue_arguments(config),
        )
        .await?;
    channel
        .queue_bind(
            config.work_queue.as_str().into(),
            config.inbound_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    try_join_all(
        delay::ladder_steps().map(|step| delay::declare(channel, &config.work_queue, step)),
    )
    .await?;
    Ok(())
}

/// Deletes what [`declare`] declares and every delay queue of the timer ladder, messages and
/// all: a topology of its own that a test, a benchmark run or a simulation leaves behind. Every
/// deletion is tried (deleting what does not exist succeeds), so one failure does not leave
/// the rest; the first error is returned. Like the declarations, the 26 deletions are sent
/// together: one round trip, not 26, for each test's teardown.
pub async fn delete(channel: &Channel, config: &Config) -> lapin::Result<()> {
    let queues: Vec<String> = [&config.work_queue, &config.dead_letter_queue]
        .into_iter()
        .cloned()
        .chain(delay::ladder_queue_names(&config.work_queue))
        .collect();
    let queues_deleted =
        join_all(queues.iter().map(|queue| {
            channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        }));
    let exchanges_deleted = join_all([&config.inbound_exchange, &config.outbound_exchange].map(
        |exchange| {
            channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        },
    ));
    let (queues_deleted, exchanges_deleted) =
        futures_util::join!(queues_deleted, exchanges_deleted);
    let first_error = queues_deleted
        .into_iter()
        .map(|deleted| deleted.map(|_| ()))
        .chain(exchanges_deleted)
        .find_map(Result::err);
    first_error.map_or(Ok(()), Err)
}
