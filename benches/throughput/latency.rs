//! Part (b): publish → `conversation.assigned` latency at a fixed event rate, beside the bare
//! relay's publish → relayed-copy latency on the same events, the floor this broker and
//! machine allow.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use switchboard::broker::{self, Message, Publisher, Session};
use switchboard::config::Config;

use crate::backlog::{event, mixed_backlog, publish_all};
use crate::isolation::{cleanup, config, new_tag};
use crate::relay::Relay;
use crate::workers::Workers;

/// What handles the events in a latency run.
#[derive(Clone, Copy, PartialEq)]
pub enum Handler {
    /// One `switchboard run` worker: the time is publish → `conversation.assigned`.
    Worker,
    /// The bare relay: the time is publish → the relayed `conversation.created`, the floor any
    /// consumer of this broker and Redis on this machine can reach.
    Relay,
}

/// p50 and p99 (ms) from publishing `conversation.created` to receiving its assignment (or, for
/// the relay, its relayed copy), at `rate` events/s for `seconds`: half of them creations, half
/// the closing of each conversation as soon as it is assigned (so capacity stays available).
pub async fn latency(rate: u64, seconds: u64, handler: Handler) -> (f64, f64) {
    let rate = rate / 2;
    let tag = new_tag();
    let config = config(&tag);
    let session = Session::open(&config, "bench").await.unwrap();
    let mut decisions = session.tap(&config.outbound_exchange).await.unwrap();
    let (setup, _) = mixed_backlog(&tag, 50, 0);
    let (team, relay) = match handler {
        Handler::Worker => {
            publish_all(&session, &config.inbound_exchange, &setup).await;
            let team = Workers::start(&config, 1, Config::default().batch_size);
            team.wait_handled(setup.len() as u64).await;
            (Some(team), None)
        }
        Handler::Relay => {
            // Declares the topology as a worker would, then hands the queue to the relay.
            let team = Workers::start(&config, 1, Config::default().batch_size);
            team.wait_ready().await;
            team.stop();
            (None, Some(Relay::start(&config).await))
        }
    };

    let total = rate * seconds;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let sender = tokio::spawn(send_creations(
        session.publisher(),
        config.inbound_exchange.clone(),
        tag.clone(),
        rate,
        total,
        sent.clone(),
    ));
    let mut latencies = Vec::with_capacity(total as usize);
    let mut closes = vec![];
    let deadline = Instant::now() + Duration::from_secs(seconds + 10);
    while (latencies.len() as u64) < total && Instant::now() < deadline {
        let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(5), decisions.next()).await
        else {
            break;
        };
        let now = Instant::now();
        let value: Value = serde_json::from_slice(&delivery.data).unwrap();
        let arrived = match handler {
            Handler::Worker => {
                value["type"] == "conversation.assigned" && value["data"]["reason"] == "new"
            }
            Handler::Relay => value["type"] == "conversation.created",
        };
        if arrived {
            let conversation = value["data"]["conversation_id"]
                .as_str()
                .unwrap()
                .to_string();
            if let Some(at) = sent.lock().unwrap().remove(&conversation) {
                latencies.push(now.duration_since(at).as_secs_f64() * 1000.0);
            }
            // Each close goes out on its own, as a platform's would (no bursts).
            let close = event(
                &tag,
                1_000_000_000 + latencies.len() as u64,
                "conversation.closed",
                json!({"conversation_id": conversation}),
            );
            closes.push(tokio::spawn(publish_one(
                session.publisher(),
                config.inbound_exchange.clone(),
                "conversation.closed",
                close,
            )));
        }
    }
    sender.await.unwrap();
    for close in closes {
        close.await.unwrap();
    }
    if let Some(team) = team {
        team.stop();
    }
    if let Some(relay) = relay {
        relay.stop();
    }
    session.close().await;
    cleanup(&config).await;
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    assert!(!latencies.is_empty(), "no assignment received");
    (at(0.5), at(0.99))
}

/// Publishes `total` creations at `rate` per second, noting when each went out in `sent`.
async fn send_creations(
    publisher: Publisher,
    exchange: String,
    project: String,
    rate: u64,
    total: u64,
    sent: Arc<Mutex<HashMap<String, Instant>>>,
) {
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    let per_tick = rate as f64 / 1000.0;
    let mut due = 0.0;
    let mut i = 0;
    let mut confirms = vec![];
    while i < total {
        ticker.tick().await;
        due += per_tick;
        while due >= 1.0 && i < total {
            due -= 1.0;
            i += 1;
            let conversation = format!("c{i}");
            // Every conversation closes right after, so capacity stays available.
            let created = event(
                &project,
                i * 2,
                "conversation.created",
                json!({"conversation_id": conversation, "visitor_id": format!("v{i}")}),
            );
            sent.lock().unwrap().insert(conversation, Instant::now());
            confirms.push(tokio::spawn(publish_one(
                publisher.clone(),
                exchange.clone(),
                "conversation.created",
                created,
            )));
        }
    }
    for c in confirms {
        c.await.unwrap();
    }
}

/// Publishes one event and waits for its confirm.
async fn publish_one(
    publisher: Publisher,
    exchange: String,
    routing_key: &'static str,
    body: Vec<u8>,
) {
    publisher
        .publish_all(vec![Message {
            exchange: &exchange,
            routing_key,
            body: &body,
            properties: broker::json_properties(),
        }])
        .await
        .unwrap();
}
