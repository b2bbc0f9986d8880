//! The bare relay the worker is measured against: consume → one small Redis script → publish
//! with confirm → ack, one event at a time, on the same queue with the same prefetch as a
//! worker. It republishes each event's body unchanged, with the event's type as routing key,
//! to the outbound exchange. Loaded (part (o)'s latency), its script first spends a given
//! Redis CPU per event in a loop, and nothing else.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use switchboard::broker::{self, Message, Session};
use switchboard::config::Config;

use crate::backlog::{mixed_backlog, publish_all};
use crate::cpu::{CpuPerEvents, CpuUse};
use crate::isolation::{cleanup, config, new_tag};

/// The relay's Redis work per event: count it, keep its body a minute.
pub const SCRIPT: &str =
    "local n = redis.call('INCR', KEYS[1]) redis.call('SET', KEYS[2], ARGV[1], 'EX', 60) return n";

/// Turns of a Lua loop that spends Redis CPU and nothing else: no command, no key, no memory
/// kept. `ARGV[2]` is the number of turns (after the body [`SCRIPT`] keeps in `ARGV[1]`).
pub const BUSY_LOOP: &str = "local x = 0 for i = 1, tonumber(ARGV[2]) do x = x + i end";

/// What a relay named `name` works with: its connection, a consumer of the work queue with the
/// worker's prefetch, and a session to publish with confirms (the bare and the batched relay).
pub async fn consume(config: &Config, name: &str) -> (lapin::Connection, lapin::Consumer, Session) {
    let connection = broker::open_connection(config, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    let session = Session::open(config, name).await.unwrap();
    let consumer = channel
        .basic_consume(
            config.work_queue.as_str().into(),
            name.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    (connection, consumer, session)
}

/// A running relay.
pub struct Relay {
    /// Events relayed so far.
    done: Arc<AtomicU64>,
    /// When the first event arrived, and the CPU counters then.
    first: Arc<Mutex<Option<(Instant, CpuUse)>>>,
    task: tokio::task::JoinHandle<()>,
    _session: Session,
}

impl Relay {
    pub async fn start(config: &Config) -> Relay {
        Relay::start_loaded(config, 0).await
    }

    /// A relay whose script first turns [`BUSY_LOOP`] `turns` times per event: the bare relay
    /// when 0. With as many turns as it takes to spend the worker's Redis CPU per event, it is
    /// the control that tells how much of the worker's latency that CPU accounts for, the
    /// broker and the machine being the same.
    pub async fn start_loaded(config: &Config, turns: u32) -> Relay {
        let (connection, mut consumer, session) = consume(config, "relay").await;
        let publisher = session.publisher();
        let redis = redis::Client::open(config.redis_url.as_str()).unwrap();
        let redis = redis::aio::ConnectionManager::new(redis).await.unwrap();
        let script = if turns == 0 {
            redis::Script::new(SCRIPT)
        } else {
            redis::Script::new(&format!("{BUSY_LOOP} {SCRIPT}"))
        };
        let done = Arc::new(AtomicU64::new(0));
        let first: Arc<Mutex<Option<(Instant, CpuUse)>>> = Arc::default();
        let key = format!("{{bench}}:{}", config.work_queue);
        let out = config.outbound_exchange.clone();
        let task = {
            let (done, first) = (done.clone(), first.clone());
            tokio::spawn(async move {
                let _connection = connection;
                while let Some(Ok(delivery)) = consumer.next().await {
                    first.lock().unwrap().get_or_insert_with(|| {
                        (Instant::now(), CpuUse::start(vec![std::process::id()]))
                    });
                    let (publisher, mut redis, script, done, out, key) = (
                        publisher.clone(),
                        redis.clone(),
                        script.clone(),
                        done.clone(),
                        out.clone(),
                        key.clone(),
                    );
                    tokio::spawn(async move {
                        let mut invocation = script.key(&key);
                        invocation
                            .key(format!("{key}:last"))
                            .arg(&delivery.data[..]);
                        if turns > 0 {
                            invocation.arg(turns);
                        }
                        let _: i64 = invocation.invoke_async(&mut redis).await.unwrap();
                        let routing_key = delivery
                            .properties
                            .kind()
                            .as_ref()
                            .map(|k| k.to_string())
                            .unwrap_or_else(|| delivery.routing_key.to_string());
                        publisher
                            .publish_all(vec![Message {
                                exchange: &out,
                                routing_key: &routing_key,
                                body: &delivery.data,
                                properties: broker::json_properties(),
                            }])
                            .await
                            .unwrap();
                        delivery
                            .acker
                            .ack(BasicAckOptions::default())
                            .await
                            .unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    });
                }
            })
        };
        Relay {
            done,
            first,
            task,
            _session: session,
        }
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// The bare relay's drain rate over a mixed backlog of `events`, timed from its first event,
/// with the CPU spent meanwhile.
pub async fn relay_drain(events: usize) -> (f64, CpuPerEvents) {
    let tag = new_tag();
    let config = config(&tag);
    let session = Session::open(&config, "bench").await.unwrap();
    let (_, backlog) = mixed_backlog(&tag, 10, events);
    publish_all(&session, &config.inbound_exchange, &backlog).await;
    let relay = Relay::start(&config).await;
    while relay.done.load(Ordering::Relaxed) < events as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (started, cpu) = relay
        .first
        .lock()
        .unwrap()
        .take()
        .expect("the relay received events");
    let rate = events as f64 / started.elapsed().as_secs_f64();
    let cpu = cpu.finish(events as u64);
    relay.stop();
    session.close().await;
    cleanup(&config).await;
    (rate, cpu)
}
