//! The batched relay: the broker's real ceiling for a consumer that must touch Redis and confirm
//! its outputs. Like the bare relay (consume → small Redis script → publish with confirm → ack,
//! same queue, same prefetch), but it takes every delivery that has arrived (up to the
//! prefetch) as one batch: one Redis script for the batch, every publish before waiting for
//! their confirms, one multiple-ack for the batch. Batches overlap (the next is taken while
//! the last waits for its confirms), but each acks only after the one before it has (a
//! multiple-ack covers every earlier delivery).

use futures_util::{FutureExt, StreamExt};
use lapin::options::BasicAckOptions;
use switchboard::broker::{self, Message, Session};
use switchboard::config::Config;

use crate::isolation::redis_connection;
use crate::relay::consume;

/// Per batch: count its events, keep the last body a minute (the bare relay's work, per batch).
const SCRIPT: &str = "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) redis.call('SET', KEYS[2], ARGV[2], 'EX', 60) return n";

pub struct BatchedRelay {
    task: tokio::task::JoinHandle<()>,
    _session: Session,
}

impl BatchedRelay {
    pub async fn start(config: &Config) -> BatchedRelay {
        let (connection, mut consumer, session) = consume(config, "batched-relay").await;
        let publisher = session.publisher();
        let redis = redis_connection(config).await;
        let script = redis::Script::new(SCRIPT);
        let key = format!("{{bench}}:{}", config.work_queue);
        let out = config.outbound_exchange.clone();
        let limit = usize::from(config.prefetch);
        let task = tokio::spawn(async move {
            let _connection = connection;
            let mut previous: Option<tokio::sync::oneshot::Receiver<()>> = None;
            while let Some(Ok(first)) = consumer.next().await {
                let mut batch = vec![first];
                while batch.len() < limit {
                    match consumer.next().now_or_never() {
                        Some(Some(Ok(delivery))) => batch.push(delivery),
                        _ => break,
                    }
                }
                let (publisher, script, key, out) =
                    (publisher.clone(), script.clone(), key.clone(), out.clone());
                let mut redis = redis.clone();
                let before = previous.take();
                let (done, after) = tokio::sync::oneshot::channel::<()>();
                previous = Some(after);
                tokio::spawn(async move {
                    let _: i64 = script
                        .key(&key)
                        .key(format!("{key}:last"))
                        .arg(batch.len())
                        .arg(&batch.last().unwrap().data[..])
                        .invoke_async(&mut redis)
                        .await
                        .unwrap();
                    let keys: Vec<String> = batch
                        .iter()
                        .map(|d| {
                            d.properties
                                .kind()
                                .as_ref()
                                .map(|k| k.to_string())
                                .unwrap_or_else(|| d.routing_key.to_string())
                        })
                        .collect();
                    let messages = batch
                        .iter()
                        .zip(&keys)
                        .map(|(d, routing_key)| Message {
                            exchange: &out,
                            routing_key,
                            body: &d.data,
                            properties: broker::json_properties(),
                        })
                        .collect();
                    publisher.publish_all(messages).await.unwrap();
                    if let Some(before) = before {
                        let _ = before.await;
                    }
                    batch
                        .last()
                        .unwrap()
                        .acker
                        .ack(BasicAckOptions { multiple: true })
                        .await
                        .unwrap();
                    let _ = done.send(());
                });
            }
        });
        BatchedRelay {
            task,
            _session: session,
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}
