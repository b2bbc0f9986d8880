//! Shared helpers: unique names, events, a store, and workers spawned against real services.

#![allow(dead_code)]

use serde_json::{json, Value};
use switchboard::contract::{decode, InboundEvent, OutboundEvent};
use switchboard::store::{Applied, Store, StoreOptions};

pub fn redis_url() -> String {
    std::env::var("SWITCHBOARD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn amqp_url() -> String {
    std::env::var("SWITCHBOARD_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A fresh project id, so tests never see each other's state.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The `time` of test events that do not state one of their own: all the same instant, so
/// events about one thing are applied in the order workers apply them.
pub const TEST_TIME: &str = "2026-11-22T10:00:00Z";

pub fn body(project: &str, id: &str, event_type: &str, data: Value) -> Vec<u8> {
    body_at(project, id, event_type, data, Some(TEST_TIME))
}

/// An event body with the given `time` (none when `None`).
pub fn body_at(
    project: &str,
    id: &str,
    event_type: &str,
    data: Value,
    time: Option<&str>,
) -> Vec<u8> {
    let mut event = json!({
        "specversion": "1.0", "id": id, "source": "/tests", "type": event_type,
        "project": project, "data": data
    });
    if let Some(time) = time {
        event["time"] = json!(time);
    }
    serde_json::to_vec(&event).unwrap()
}

pub fn event(project: &str, event_type: &str, data: Value) -> InboundEvent {
    let id = uuid::Uuid::new_v4().to_string();
    decode(&body(project, &id, event_type, data)).expect("test events are valid")
}

pub async fn store() -> Store {
    store_at(&redis_url()).await
}

pub async fn store_at(url: &str) -> Store {
    let nodes: Vec<String> = url.split(',').map(|s| s.trim().to_string()).collect();
    // The workers' defaults, so that the tests read the records the workers write.
    Store::connect(&nodes, StoreOptions::default())
        .await
        .expect("Redis is reachable")
}

/// Drives one project's state through the store directly, with a settable clock.
pub struct Project {
    pub id: String,
    pub store: Store,
    pub now_ms: i64,
}

impl Project {
    pub async fn new() -> Project {
        Project {
            id: unique("p"),
            store: store().await,
            now_ms: 1_795_000_000_000,
        }
    }

    pub async fn apply(&self, event_type: &str, data: Value) -> Vec<OutboundEvent> {
        self.apply_event(&event(&self.id, event_type, data))
            .await
            .outputs
    }

    pub async fn apply_event(&self, event: &InboundEvent) -> Applied {
        let applied = self
            .store
            .apply(event, self.now_ms)
            .await
            .expect("store applies the event");
        for (i, output) in applied.outputs.iter().enumerate() {
            let body = switchboard::contract::outbound::envelope(
                &event.project,
                &event.id,
                i,
                "2026-11-22T10:00:00Z",
                output,
            );
            assert_valid_output(&serde_json::from_slice(&body).unwrap());
        }
        applied
    }

    pub async fn configure(&self, settings: Value) {
        self.apply("project.configured", settings).await;
    }

    pub async fn configure_outputs(&self, settings: Value) -> Vec<OutboundEvent> {
        self.apply("project.configured", settings).await
    }

    /// Adds agents online, each with the given `max_concurrent`.
    pub async fn online_agents(&self, agents: &[(&str, u64)]) {
        let patches: Vec<Value> = agents
            .iter()
            .map(|(id, max)| json!({"agent_id": id, "max_concurrent": max}))
            .collect();
        self.apply("agent.upserted", json!({ "agents": patches }))
            .await;
        for (id, _) in agents {
            self.status(id, "online").await;
        }
    }

    pub async fn status(&self, agent: &str, status: &str) -> Vec<OutboundEvent> {
        self.apply(
            "agent.status_changed",
            json!({"agent_id": agent, "status": status}),
        )
        .await
    }

    pub async fn create(&self, conversation: &str) -> Vec<OutboundEvent> {
        self.apply(
            "conversation.created",
            json!({"conversation_id": conversation, "visitor_id": format!("v-{conversation}")}),
        )
        .await
    }

    pub async fn close(&self, conversation: &str) -> Vec<OutboundEvent> {
        self.apply(
            "conversation.closed",
            json!({"conversation_id": conversation}),
        )
        .await
    }

    /// Open conversations per agent, read from Redis.
    pub async fn load(&self, agent: &str) -> i64 {
        load_of(&self.store, &self.id, agent).await
    }

    pub async fn waiting(&self) -> Vec<String> {
        let key = format!("sb:{{{}}}:waiting", self.id);
        let members: Vec<String> = self
            .store
            .query(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1))
            .await
            .unwrap();
        members
            .into_iter()
            .map(|m| m.split_once('|').unwrap().1.to_string())
            .collect()
    }
}

/// The agent of each `conversation.assigned` in `outputs`.
pub fn assigned_agents(outputs: &[OutboundEvent]) -> Vec<String> {
    outputs
        .iter()
        .filter(|o| o.event_type == "conversation.assigned")
        .map(|o| o.data["agent_id"].as_str().unwrap().to_string())
        .collect()
}

pub fn types(outputs: &[OutboundEvent]) -> Vec<&str> {
    outputs.iter().map(|o| o.event_type.as_str()).collect()
}

// ---------------------------------------------------------------------------------------------
// Broker-level helpers: a private topology per test, workers in-process or as processes.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicGetOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use switchboard::application::Application;
use switchboard::broker::{self, Message, Session};
use switchboard::clock::SystemClock;
use switchboard::config::Config;

/// A test's own exchanges and queues, a publisher, and a tap on its outbound exchange.
pub struct Env {
    pub config: Config,
    /// Whether every output received is checked against its JSON Schema (this release's; the
    /// upgrade test turns it off while the previous release publishes).
    pub check_outputs: bool,
    /// Events published to this topology so far.
    published: std::sync::atomic::AtomicU64,
    session: Session,
    outputs: lapin::Consumer,
    channel: lapin::Channel,
}

/// A dead-lettered event: its body and its `x-switchboard-error` header.
pub struct DeadLetter {
    pub body: Vec<u8>,
    pub reason: Option<String>,
}

impl Env {
    pub async fn new() -> Env {
        Env::with_amqp_url(amqp_url()).await
    }

    /// Like [`Env::new`], on the broker at `amqp_url` (a private node, say).
    pub async fn with_amqp_url(amqp_url: String) -> Env {
        let tag = unique("t");
        let config = Config {
            amqp_url: amqp_url.into(),
            redis_url: redis_url().into(),
            http_addr: "127.0.0.1:0".into(),
            inbound_exchange: format!("{tag}.in"),
            work_queue: format!("{tag}.work"),
            outbound_exchange: format!("{tag}.out"),
            dead_letter_queue: format!("{tag}.dead"),
            prefetch: 32,
            delivery_limit: 5,
            ..Config::default()
        };
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
            published: Default::default(),
            session,
            outputs,
            channel,
        }
    }

    /// A worker in this process, stopped when the handle is dropped or stopped.
    pub async fn spawn_worker(&self) -> WorkerHandle {
        self.spawn_worker_with_clock(Arc::new(SystemClock)).await
    }

    /// A worker in this process that tells time by `clock`.
    pub async fn spawn_worker_with_clock(
        &self,
        clock: Arc<dyn switchboard::clock::Clock>,
    ) -> WorkerHandle {
        let application = Application::build(self.config.clone(), clock)
            .await
            .unwrap();
        let http_addr = application.http_addr();
        let readiness = application.readiness();
        let connection_name = application.connection_name().to_string();
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            application
                .run_until_stopped(async move { stopped.cancelled().await })
                .await
                .unwrap()
        });
        for _ in 0..100 {
            if readiness.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(readiness.is_ready(), "the worker became ready");
        WorkerHandle {
            stop,
            task: Some(task),
            http_addr,
            readiness,
            connection_name,
        }
    }

    /// A worker as a separate `switchboard run` process (for SIGKILL and SIGTERM tests).
    pub fn spawn_process(&self) -> std::process::Child {
        worker_process(&self.config, 0)
    }

    pub async fn publish(&self, body: &[u8]) {
        self.publish_many(&[body.to_vec()]).await;
    }

    /// Publishes as a platform does: persistent, routing key = the event's type.
    pub async fn publish_many(&self, bodies: &[Vec<u8>]) {
        let keys: Vec<String> = bodies
            .iter()
            .map(|b| {
                serde_json::from_slice::<Value>(b)
                    .ok()
                    .and_then(|v| v["type"].as_str().map(String::from))
                    .unwrap_or_else(|| "garbage".into())
            })
            .collect();
        let messages = bodies
            .iter()
            .zip(&keys)
            .map(|(body, key)| Message {
                exchange: &self.config.inbound_exchange,
                routing_key: key,
                body,
                properties: broker::json_properties(),
            })
            .collect();
        self.session
            .publisher()
            .publish_all(messages)
            .await
            .unwrap();
        self.published
            .fetch_add(bodies.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many events were published to this topology so far.
    pub fn published(&self) -> u64 {
        self.published.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Publishes a team (agents upserted, then online) and waits until a worker has applied it,
    /// so that what the test publishes next meets the team (events are handled concurrently).
    pub async fn team(&self, platform: &mut Platform, agents: &[(&str, u64)]) {
        self.publish_many(&platform.agents(agents)).await;
        let store = store_at(&self.config.redis_url).await;
        let key = format!("sb:{{{}}}:pool:load", platform.project);
        let online = agents.iter().filter(|(_, max)| *max > 0).count();
        for _ in 0..400 {
            let n: usize = store.query(redis::cmd("ZCARD").arg(&key)).await.unwrap();
            if n >= online {
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
        let key = format!("sb:{{{}}}:settings", platform.project);
        for _ in 0..400 {
            let stored: Option<String> = store.query(redis::cmd("GET").arg(&key)).await.unwrap();
            let stored: Value = stored
                .map(|s| serde_json::from_str(&s).unwrap())
                .unwrap_or(Value::Null);
            if settings
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| &stored[k] == v)
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

    /// The next `n` outbound events, in the order they arrived; fewer if `wait` runs out.
    pub async fn outputs(&mut self, n: usize, wait: Duration) -> Vec<Value> {
        let mut received = vec![];
        let deadline = tokio::time::Instant::now() + wait;
        while received.len() < n {
            match tokio::time::timeout_at(deadline, self.outputs.next()).await {
                Ok(Some(Ok(delivery))) => {
                    let output: Value = serde_json::from_slice(&delivery.data).unwrap();
                    if self.check_outputs {
                        assert_valid_output(&output);
                    }
                    received.push(output)
                }
                _ => break,
            }
        }
        received
    }

    /// Outputs until `done` says they are complete (or `wait` runs out), then whatever else
    /// arrives in a short grace period (late duplicates would show up there).
    pub async fn outputs_until(
        &mut self,
        done: impl Fn(&[Value]) -> bool,
        wait: Duration,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut received = vec![];
        while !done(&received) && tokio::time::Instant::now() < deadline {
            received.extend(self.outputs(usize::MAX, Duration::from_millis(200)).await);
        }
        received.extend(self.outputs_for(Duration::from_millis(500)).await);
        received
    }

    /// Whatever arrives within `wait`.
    pub async fn outputs_for(&mut self, wait: Duration) -> Vec<Value> {
        self.outputs(usize::MAX, wait).await
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
                    let reason = message
                        .delivery
                        .properties
                        .headers()
                        .as_ref()
                        .and_then(|h| h.inner().get(broker::ERROR_HEADER).cloned())
                        .and_then(|v| match v {
                            AMQPValue::LongString(s) => Some(s.to_string()),
                            _ => None,
                        });
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

    /// Deletes the test's queues (delay queues of the delays tests use included) and exchanges.
    pub async fn cleanup(self) {
        let delay_queues = switchboard::broker::delay::ladder_queue_names(&self.config.work_queue);
        for queue in [&self.config.work_queue, &self.config.dead_letter_queue]
            .into_iter()
            .chain(&delay_queues)
        {
            let _ = self
                .channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for exchange in [
            &self.config.inbound_exchange,
            &self.config.outbound_exchange,
        ] {
            let _ = self
                .channel
                .exchange_delete(exchange.as_str().into(), Default::default())
                .await;
        }
        self.session.close().await;
    }
}

/// `switchboard run` processes, killed (SIGKILL) when dropped, so that a failing test leaves
/// none running.
pub struct WorkerProcesses {
    pub children: Vec<std::process::Child>,
    /// Where each serves `/metrics` (when known).
    pub http_ports: Vec<u16>,
}

impl WorkerProcesses {
    /// `n` worker processes on `env`'s topology, each serving HTTP on a port of its own.
    pub fn spawn(env: &Env, n: usize) -> WorkerProcesses {
        let http_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let children = http_ports
            .iter()
            .map(|port| worker_process(&env.config, *port))
            .collect();
        WorkerProcesses {
            children,
            http_ports,
        }
    }

    /// Workers started otherwise (another build's, say), whose metrics are not read.
    pub fn of(children: Vec<std::process::Child>) -> WorkerProcesses {
        WorkerProcesses {
            children,
            http_ports: vec![],
        }
    }

    /// Waits until these workers have handled every event published to `env` (applied them,
    /// or found them stale or duplicates, or dead-lettered them): their effect is then final.
    /// Read from their `/metrics`, as an operator would.
    pub async fn settled(&self, env: &Env) {
        let addrs: Vec<std::net::SocketAddr> = self
            .http_ports
            .iter()
            .map(|port| std::net::SocketAddr::from(([127, 0, 0, 1], *port)))
            .collect();
        let mut handled = 0;
        for _ in 0..600 {
            handled = events_handled(&addrs).await;
            if handled >= env.published() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{handled} of {} events were handled within 15 s",
            env.published()
        );
    }
}

/// The events the workers serving `/metrics` at `addrs` have handled, from their
/// `switchboard_events_total` (every outcome but `failed`; timers, which workers send
/// themselves, left out).
pub async fn events_handled(addrs: &[std::net::SocketAddr]) -> u64 {
    let mut total = 0.0;
    for addr in addrs {
        let metrics = http_get(*addr, "/metrics").await.unwrap_or_default();
        total += metrics
            .lines()
            .filter(|line| line.starts_with("switchboard_events_total{"))
            .filter(|line| {
                !line.contains("type=\"timer.fired\"") && !line.contains("outcome=\"failed\"")
            })
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    total as u64
}

impl Drop for WorkerProcesses {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An in-process worker.
pub struct WorkerHandle {
    stop: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    pub http_addr: std::net::SocketAddr,
    pub readiness: Arc<switchboard::http::Readiness>,
    pub connection_name: String,
}

impl WorkerHandle {
    /// Stops it as SIGTERM would and waits until it has finished its in-flight events.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// A `switchboard run` process configured like `config`, serving HTTP on `http_port` (0: any).
pub fn worker_process(config: &Config, http_port: u16) -> std::process::Child {
    worker_process_of(env!("CARGO_BIN_EXE_switchboard"), config, http_port)
}

/// Like [`worker_process`], with another build's binary (the previous release, say).
pub fn worker_process_of(binary: &str, config: &Config, http_port: u16) -> std::process::Child {
    std::process::Command::new(binary)
        .arg("run")
        .env("SWITCHBOARD_AMQP_URL", config.amqp_url.as_str())
        .env("SWITCHBOARD_REDIS_URL", config.redis_url.as_str())
        .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("SWITCHBOARD_INBOUND_EXCHANGE", &config.inbound_exchange)
        .env("SWITCHBOARD_WORK_QUEUE", &config.work_queue)
        .env("SWITCHBOARD_OUTBOUND_EXCHANGE", &config.outbound_exchange)
        .env("SWITCHBOARD_DEAD_LETTER_QUEUE", &config.dead_letter_queue)
        .env("SWITCHBOARD_PREFETCH", config.prefetch.to_string())
        .env(
            "SWITCHBOARD_DELIVERY_LIMIT",
            config.delivery_limit.to_string(),
        )
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("the switchboard binary starts")
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One GET against a worker's HTTP endpoints; `None` if it does not answer.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}

/// A private `redis-server` on a free loopback port, persisting to a temporary directory so
/// that a restart keeps its data (like a production Redis with AOF).
pub struct PrivateRedis {
    pub port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub fn start() -> PrivateRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(unique("redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = PrivateRedis {
            port,
            dir,
            child: None,
        };
        redis.restart();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Closes a worker's broker connection from the broker's side, as a broker restart or a
/// network cut would.
pub fn close_broker_connection(connection_name: &str) {
    let listing = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let pid = listing
        .lines()
        .find(|line| line.contains(connection_name))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no connection named {connection_name} in {listing}"))
        .to_string();
    let closed = std::process::Command::new("rabbitmqctl")
        .args(["close_connection", &pid, "test: connection cut"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(closed.status.success(), "{closed:?}");
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Outbound events of one type.
pub fn of_type<'a>(outputs: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    outputs.iter().filter(|o| o["type"] == event_type).collect()
}

/// Reads the open load of an agent of `project` straight from Redis.
pub async fn load_of(store: &Store, project: &str, agent: &str) -> i64 {
    let cmd = redis::cmd("ZLEXCOUNT")
        .arg(format!("sb:{{{project}}}:owned"))
        .arg(format!("[{agent}|"))
        .arg(format!("[{agent}|\u{ff}"))
        .clone();
    store.query(&cmd).await.unwrap()
}

/// Builds the events a platform would send for a project.
pub struct Platform {
    pub project: String,
    next: u64,
}

impl Platform {
    pub fn new() -> Platform {
        Platform {
            project: unique("p"),
            next: 0,
        }
    }

    pub fn event(&mut self, event_type: &str, data: Value) -> Vec<u8> {
        self.event_at(event_type, data, Some(TEST_TIME))
    }

    /// An event with its own `time` (none when `None`).
    pub fn event_at(&mut self, event_type: &str, data: Value, time: Option<&str>) -> Vec<u8> {
        self.next += 1;
        body_at(&self.project, &self.last_id(), event_type, data, time)
    }

    /// The id of the last event built.
    pub fn last_id(&self) -> String {
        format!("ev-{}", self.next)
    }

    pub fn agents(&mut self, agents: &[(&str, u64)]) -> Vec<Vec<u8>> {
        let patches: Vec<Value> = agents
            .iter()
            .map(|(id, max)| json!({"agent_id": id, "max_concurrent": max}))
            .collect();
        let mut events = vec![self.event("agent.upserted", json!({ "agents": patches }))];
        for (id, _) in agents {
            events.push(self.event(
                "agent.status_changed",
                json!({"agent_id": id, "status": "online"}),
            ));
        }
        events
    }

    pub fn created(&mut self, conversation: &str) -> Vec<u8> {
        self.event(
            "conversation.created",
            json!({"conversation_id": conversation, "visitor_id": format!("v-{conversation}")}),
        )
    }

    pub fn closed(&mut self, conversation: &str) -> Vec<u8> {
        self.event(
            "conversation.closed",
            json!({"conversation_id": conversation}),
        )
    }
}

/// Fails the test when an outbound event does not match its JSON Schema.
pub fn assert_valid_output(output: &Value) {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    use switchboard::contract::schema::{events, Direction};
    static VALIDATORS: OnceLock<HashMap<&'static str, jsonschema::Validator>> = OnceLock::new();
    let validators = VALIDATORS.get_or_init(|| {
        events()
            .into_iter()
            .filter(|e| e.direction == Direction::Outbound)
            .map(|e| {
                (
                    e.event_type,
                    jsonschema::validator_for(&e.schema()).unwrap(),
                )
            })
            .collect()
    });
    let event_type = output["type"].as_str().unwrap_or("");
    let validator = validators
        .get(event_type)
        .unwrap_or_else(|| panic!("no schema for outbound {event_type}"));
    if let Err(error) = validator.validate(output) {
        panic!("outbound event does not match its schema: {error}\n{output}");
    }
}
