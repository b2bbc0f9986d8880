//! A test's own broker topology (exchanges and queues under a unique tag), a publisher that
//! publishes as a platform does (and counts what it published), a tap on the outbound
//! exchange, and waits for what a worker has applied.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lapin::options::{BasicGetOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{json, Value};
use switchboard::broker::{self, topology, Session};
use switchboard::cli::publish::publish_events;
use switchboard::config::Config;

use super::events::Platform;
use super::names::{amqp_url, redis_url, store_layout, unique};
use super::redis::{store_at, PrivateRedis};

/// A test's own exchanges and queues, a publisher, and a tap on its outbound exchange.
pub struct Env {
    pub config: Config,
    /// Whether every output received is checked against its JSON Schema (this release's; the
    /// upgrade test turns it off while the previous release publishes).
    pub check_outputs: bool,
    /// Events published to this topology so far.
    published: AtomicU64,
    session: Session,
    pub(super) outputs: lapin::Consumer,
    channel: lapin::Channel,
}

/// A dead-lettered event: its body and its `x-switchboard-error` header.
pub struct DeadLetter {
    pub body: Vec<u8>,
    pub reason: Option<String>,
}

impl Env {
    /// The configuration of a test's own topology (exchanges and queues under a unique tag) on
    /// the broker at `amqp_url`, as [`Env::new`] makes it, before anything is declared.
    pub fn config_on(amqp_url: String) -> Config {
        let tag = unique("t");
        Config {
            amqp_url: amqp_url.into(),
            redis_url: redis_url().into(),
            http_addr: "127.0.0.1:0".into(),
            inbound_exchange: format!("{tag}.in"),
            work_queue: format!("{tag}.work"),
            outbound_exchange: format!("{tag}.out"),
            dead_letter_queue: format!("{tag}.dead"),
            prefetch: 32,
            delivery_limit: 5,
            store_layout: store_layout(),
            ..Config::default()
        }
    }

    pub async fn new() -> Env {
        Env::with_amqp_url(amqp_url()).await
    }

    /// Like [`Env::new`], its workers on `redis` (a private server, to stop or to reconfigure)
    /// instead of the shared Redis.
    pub async fn on_redis(redis: &PrivateRedis) -> Env {
        let mut env = Env::new().await;
        env.config.redis_url = redis.url().into();
        env
    }

    /// Like [`Env::new`], on the broker at `amqp_url` (a private node, say).
    pub async fn with_amqp_url(amqp_url: String) -> Env {
        let config = Env::config_on(amqp_url);
        let session = Session::open(&config, "tests")
            .await
            .expect("RabbitMQ is reachable");
        let outputs = session.tap(&config.outbound_exchange).await.unwrap();
        let connection = lapin::Connection::connect(&config.amqp_url, Default::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        Env {
            config,
            check_outputs: true,
            published: AtomicU64::default(),
            session,
            outputs,
            channel,
        }
    }

    pub async fn publish(&self, body: &[u8]) {
        self.publish_many(&[body.to_vec()]).await;
    }

    /// Publishes as a platform does: persistent, routing key = the event's type.
    pub async fn publish_many(&self, bodies: &[Vec<u8>]) {
        let publisher = self.session.publisher();
        publish_events(&publisher, &self.config.inbound_exchange, bodies)
            .await
            .unwrap();
        self.published
            .fetch_add(bodies.len() as u64, Ordering::Relaxed);
    }

    /// How many events were published to this topology so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Publishes a team (agents upserted with their `max_concurrent`, then online) and waits
    /// until a worker has applied it, so that what the test publishes next meets the team
    /// (events are handled concurrently).
    pub async fn team(&self, platform: &mut Platform, agents: &[(&str, u64)]) {
        let patches: Vec<Value> = agents
            .iter()
            .map(|(id, max)| json!({"agent_id": id, "max_concurrent": max}))
            .collect();
        self.team_of(platform, json!(patches)).await;
    }

    /// Publishes agents (the patches `agent.upserted` carries), sets each online, and waits
    /// until a worker has applied it: until those with a `max_concurrent` above 0 are eligible
    /// and the others are not.
    pub async fn team_of(&self, platform: &mut Platform, agents: Value) {
        let patches = agents.as_array().expect("a list of agent patches");
        let mut events = vec![platform.event("agent.upserted", json!({ "agents": agents }))];
        let mut expected = vec![];
        for agent in patches {
            events.push(platform.event(
                "agent.status_changed",
                json!({"agent_id": agent["agent_id"], "status": "online"}),
            ));
            let id = agent["agent_id"].as_str().unwrap().to_string();
            expected.push((id, agent["max_concurrent"].as_u64().unwrap_or(0) > 0));
        }
        self.publish_many(&events).await;
        let store = store_at(&self.config.redis_url).await;
        let project = platform.id();
        for _ in 0..400 {
            let eligible = store.eligible(&project).await.unwrap();
            if expected
                .iter()
                .all(|(id, receives)| eligible.contains(id) == *receives)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the team of {} was not applied within 10 s",
            platform.project
        );
    }

    /// Publishes a `project.configured` and waits until a worker has stored it.
    pub async fn configure(&self, platform: &mut Platform, settings: Value) {
        self.publish(&platform.event("project.configured", settings.clone()))
            .await;
        let store = store_at(&self.config.redis_url).await;
        let project = platform.id();
        for _ in 0..400 {
            let stored = store.settings(&project).await.unwrap();
            if settings
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| stored.get(k).unwrap_or(&Value::Null) == v)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the settings of {} were not applied within 10 s",
            platform.project
        );
    }

    /// Messages in a queue right now (ready, not unacked).
    pub async fn depth(&self, queue: &str) -> u32 {
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        let declared = self
            .channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .unwrap();
        declared.message_count()
    }

    /// Waits until `queue` holds `n` messages ready (a dead letter is made, and what a
    /// connection left unacknowledged goes back to its queue, a little after the fact).
    pub async fn depth_becomes(&self, queue: &str, n: u32) {
        for _ in 0..200 {
            if self.depth(queue).await == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{queue} holds {} messages, not {n}",
            self.depth(queue).await
        );
    }

    /// Takes up to `n` dead letters, waiting up to `wait` for them.
    pub async fn dead_letters(&self, n: usize, wait: Duration) -> Vec<DeadLetter> {
        let mut letters = vec![];
        let deadline = tokio::time::Instant::now() + wait;
        while letters.len() < n && tokio::time::Instant::now() < deadline {
            let got = self
                .channel
                .basic_get(
                    self.config.dead_letter_queue.as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap();
            match got {
                Some(message) => {
                    let reason =
                        broker::header_text(&message.delivery.properties, broker::ERROR_HEADER);
                    letters.push(DeadLetter {
                        body: message.delivery.data,
                        reason,
                    });
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        letters
    }

    /// Fails, naming their reasons, if any event went to dead letters (looked for 200 ms).
    pub async fn assert_no_dead_letters(&self, context: &str) {
        let letters = self.dead_letters(1, Duration::from_millis(200)).await;
        let reasons: Vec<Option<String>> = letters.into_iter().map(|l| l.reason).collect();
        assert!(reasons.is_empty(), "{context}: dead-lettered: {reasons:?}");
    }

    /// Deletes the test's queues (every delay queue included) and exchanges.
    pub async fn cleanup(self) {
        let _ = topology::delete(&self.channel, &self.config).await;
        self.session.close().await;
    }
}

/// Whether the broker has a queue of that name (a passive declaration, on a channel of its
/// own: the broker closes the channel that asks for one it does not have).
pub async fn queue_exists(connection: &lapin::Connection, queue: &str) -> bool {
    let channel = connection.create_channel().await.unwrap();
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .is_ok()
}
