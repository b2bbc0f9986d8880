//! Throughput and latency of Switchboard workers against the machine's real RabbitMQ and Redis,
//! side by side with a bare relay built here, in one run:
//!
//! (a) drain rate of one worker over a backlog of mixed events vs the bare relay (consume → one
//!     small Redis script → publish with confirm → ack; same queue type, durability, prefetch);
//! (b) publish → `conversation.assigned` latency p50/p99 at fixed rates;
//! (c) drain rate with 10 vs 10,000 agents;
//! (d) drain rate with 1, 2 and 4 workers;
//! (e) Redis time and commands per event type, from the slow log;
//! (f) Redis CPU per event, the backlog applied in batches straight through the store.
//!
//! Workers are `switchboard run` processes (release build); drains are timed from the moment the
//! backlog is in the queue and the workers start, to the moment they have handled every event
//! (read from their `/metrics`). `cargo bench --bench throughput` (add `-- --quick` for a short
//! run, `--only a,b` for some parts, `--rounds N` for N rounds of (a)); results are printed and
//! written to `bench-results/`. `BENCH_WORKER_BIN=<path>` runs another build's `switchboard` as
//! the worker: on a noisy machine, the one fair comparison of two versions is runs that take
//! turns against the same relay.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use serde_json::{json, Value};
use switchboard::broker::{self, Message, Session};
use switchboard::config::Config;
use switchboard::store::interface::PROJECT_KEYS;

fn config(tag: &str) -> Config {
    Config {
        inbound_exchange: format!("{tag}.in"),
        work_queue: format!("{tag}.work"),
        outbound_exchange: format!("{tag}.out"),
        dead_letter_queue: format!("{tag}.dead"),
        ..Config::default()
    }
}

/// One event as a platform publishes it: its `time` (ms precision) grows with its number, so
/// the store's order checks run as they do in production.
fn event(project: &str, id: u64, event_type: &str, data: Value) -> Vec<u8> {
    static START_MS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let start = *START_MS.get_or_init(|| chrono::Utc::now().timestamp_millis());
    serde_json::to_vec(&json!({
        "specversion": "1.0", "id": format!("{project}-{id}"), "source": "/bench",
        "type": event_type, "project": project, "data": data,
        "time": switchboard::clock::rfc3339(start + id as i64),
    }))
    .unwrap()
}

/// A team, online, then `n` events: conversations created and closed, with status changes.
fn mixed_backlog(project: &str, agents: usize, n: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    let patches: Vec<Value> = (0..agents)
        .map(|i| json!({"agent_id": format!("agent-{i}"), "max_concurrent": 20}))
        .collect();
    let mut setup = vec![];
    for chunk in patches.chunks(1000) {
        setup.push(event(
            project,
            next(),
            "agent.upserted",
            json!({"agents": chunk}),
        ));
    }
    for i in 0..agents {
        setup.push(event(
            project,
            next(),
            "agent.status_changed",
            json!({"agent_id": format!("agent-{i}"), "status": "online"}),
        ));
    }
    let mut backlog = Vec::with_capacity(n);
    let mut conversation = 0;
    while backlog.len() < n {
        match backlog.len() % 10 {
            0..=5 => {
                conversation += 1;
                backlog.push(event(project, next(), "conversation.created",
                    json!({"conversation_id": format!("c{conversation}"), "visitor_id": format!("v{conversation}")})));
            }
            6..=8 => backlog.push(event(
                project,
                next(),
                "conversation.closed",
                json!({"conversation_id": format!("c{}", conversation.max(3) - 2)}),
            )),
            _ => {
                let agent = format!("agent-{}", conversation % agents);
                let status = if conversation % 4 == 0 {
                    "busy"
                } else {
                    "online"
                };
                backlog.push(event(
                    project,
                    next(),
                    "agent.status_changed",
                    json!({"agent_id": agent, "status": status}),
                ));
            }
        }
    }
    (setup, backlog)
}

async fn publish_all(session: &Session, exchange: &str, bodies: &[Vec<u8>]) {
    let publisher = session.publisher();
    for chunk in bodies.chunks(500) {
        let messages = chunk
            .iter()
            .map(|body| {
                let key = serde_json::from_slice::<Value>(body).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string();
                (key, body)
            })
            .collect::<Vec<_>>();
        publisher
            .publish_all(
                messages
                    .iter()
                    .map(|(key, body)| Message {
                        exchange,
                        routing_key: key,
                        body,
                        properties: broker::json_properties(),
                    })
                    .collect(),
            )
            .await
            .unwrap();
    }
}

struct Workers {
    children: Vec<std::process::Child>,
    ports: Vec<u16>,
}

impl Workers {
    fn start(config: &Config, count: usize, batch_size: u16) -> Workers {
        let mut children = vec![];
        let mut ports = vec![];
        for _ in 0..count {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let binary = std::env::var("BENCH_WORKER_BIN")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").into());
            let child = std::process::Command::new(binary)
                .arg("run")
                .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{port}"))
                .env("SWITCHBOARD_INBOUND_EXCHANGE", &config.inbound_exchange)
                .env("SWITCHBOARD_WORK_QUEUE", &config.work_queue)
                .env("SWITCHBOARD_OUTBOUND_EXCHANGE", &config.outbound_exchange)
                .env("SWITCHBOARD_DEAD_LETTER_QUEUE", &config.dead_letter_queue)
                .env("SWITCHBOARD_BATCH_SIZE", batch_size.to_string())
                .env("RUST_LOG", "warn")
                .spawn()
                .unwrap();
            children.push(child);
            ports.push(port);
        }
        Workers { children, ports }
    }

    /// Waits until every worker is connected and consuming.
    async fn wait_ready(&self) {
        for port in &self.ports {
            while !http_get(*port, "/readyz")
                .await
                .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// Events handled so far by all workers (from their /metrics).
    async fn handled(&self) -> u64 {
        let mut total = 0;
        for port in &self.ports {
            if let Ok(text) = http_get(*port, "/metrics").await {
                total += text
                    .lines()
                    .filter(|l| l.starts_with("switchboard_events_total{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>() as u64;
            }
        }
        total
    }

    /// Waits until the workers have handled `n` events. Each look is a `/metrics` scrape, which
    /// costs the workers a render and wake-ups (and Redis a ZCARD per project) in the middle of
    /// the drain they are timed on, where the relay's progress is an in-process counter, free to
    /// read: so it looks again when about half of what remains should be done at the rate so
    /// far, often only near the end.
    async fn wait_handled(&self, n: u64) {
        let started = Instant::now();
        let at_start = self.handled().await;
        loop {
            let done = self.handled().await;
            if done >= n {
                return;
            }
            let elapsed = started.elapsed().as_secs_f64();
            // A failed scrape counts a worker as 0: never below the start.
            let rate = done.saturating_sub(at_start) as f64 / elapsed.max(1e-3);
            let half_of_rest = if rate > 0.0 {
                (n - done) as f64 / rate / 2.0
            } else {
                0.02
            };
            tokio::time::sleep(Duration::from_secs_f64(half_of_rest.clamp(0.002, 0.2))).await;
        }
    }

    /// Mean number of events per batch the workers handled (from their /metrics).
    async fn mean_batch(&self) -> f64 {
        let (mut sum, mut count) = (0.0, 0.0);
        for port in &self.ports {
            if let Ok(text) = http_get(*port, "/metrics").await {
                for line in text.lines() {
                    let value = || line.rsplit(' ').next()?.parse::<f64>().ok();
                    if line.starts_with("switchboard_batch_events_sum") {
                        sum += value().unwrap_or(0.0);
                    } else if line.starts_with("switchboard_batch_events_count") {
                        count += value().unwrap_or(0.0);
                    }
                }
            }
        }
        sum / count
    }

    /// Drains `n` events and returns the rate, timed from the first event handled (not from
    /// process start: connecting and declaring are not draining), with the CPU spent meanwhile.
    async fn timed_drain(&self, n: u64) -> (f64, CpuPerEvents) {
        let mut first = self.handled().await;
        while first == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            first = self.handled().await;
        }
        let cpu = CpuUse::start(self.children.iter().map(|c| c.id()).collect());
        let started = Instant::now();
        self.wait_handled(n).await;
        let rate = (n - first) as f64 / started.elapsed().as_secs_f64();
        (rate, cpu.finish(n - first))
    }

    fn stop(mut self) {
        for child in &mut self.children {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

/// Deletes the keys a run left in Redis (a project's state, the relay's counters), so repeated
/// runs do not fill the machine's Redis.
async fn forget_keys(config: &Config, pattern: &str) {
    let client = redis::Client::open(config.redis_url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut connection)
            .await
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("UNLINK")
                .arg(&keys)
                .query_async(&mut connection)
                .await
                .unwrap();
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// CPU seconds used by RabbitMQ, Redis and the event handlers (worker processes, or this
/// process for the relay) over one drain: where the time per event goes on a machine where all
/// of them share the cores.
struct CpuUse {
    handlers: Vec<u32>,
    at_start: [f64; 3],
    started: Instant,
}

/// CPU milliseconds per 1,000 events, by process.
#[derive(Clone, Copy, Default)]
struct CpuPerEvents {
    rabbitmq: f64,
    redis: f64,
    handler: f64,
    /// Share of the machine's cores in use during the drain.
    busy: f64,
}

impl CpuUse {
    fn start(handlers: Vec<u32>) -> CpuUse {
        let at_start = Self::sample(&handlers);
        CpuUse {
            handlers,
            at_start,
            started: Instant::now(),
        }
    }

    fn sample(handlers: &[u32]) -> [f64; 3] {
        let rabbitmq = cpu_seconds_named("beam.smp");
        let redis = cpu_seconds_named("redis-server");
        let handler = handlers.iter().map(|p| cpu_seconds(*p)).sum();
        [rabbitmq, redis, handler]
    }

    fn finish(self, events: u64) -> CpuPerEvents {
        let now = Self::sample(&self.handlers);
        let per = |i: usize| (now[i] - self.at_start[i]) * 1e6 / events as f64;
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1) as f64;
        let used: f64 = (0..3).map(|i| now[i] - self.at_start[i]).sum();
        CpuPerEvents {
            rabbitmq: per(0),
            redis: per(1),
            handler: per(2),
            busy: used / self.started.elapsed().as_secs_f64() / cores,
        }
    }
}

fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == name)
        })
        .collect()
}

/// User + system CPU seconds of every process of this name.
fn cpu_seconds_named(name: &str) -> f64 {
    pids_named(name).iter().map(|p| cpu_seconds(*p)).sum()
}

/// User + system CPU seconds of a process (0 if it is gone).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command (which may contain spaces) : state is field 3, utime 14, stime 15.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // `after` starts at field 3, so field n is index n - 3. Linux reports in 1/100 s ticks.
    (ticks(14 - 3) + ticks(15 - 3)) / 100.0
}

async fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

async fn cleanup(config: &Config) {
    let tag = config.work_queue.trim_end_matches(".work");
    forget_keys(config, &format!("sb:{{{tag}}}:*")).await;
    forget_keys(config, &format!("{{bench}}:{}*", config.work_queue)).await;
    let connection = lapin::Connection::connect(&config.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in [&config.work_queue, &config.dead_letter_queue] {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in [&config.inbound_exchange, &config.outbound_exchange] {
        let _ = channel
            .exchange_delete(exchange.as_str().into(), Default::default())
            .await;
    }
}

/// Events per second for `workers` workers draining `backlog` (after `setup` is applied).
/// `batch_size` is the workers' `SWITCHBOARD_BATCH_SIZE`. Returns the rate, the CPU spent and
/// the mean number of events per batch.
async fn worker_drain(
    agents: usize,
    events: usize,
    workers: usize,
    batch_size: u16,
) -> (f64, CpuPerEvents, f64) {
    let tag = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config = config(&tag);
    let session = Session::open(&config, "bench").await.unwrap();
    let (setup, backlog) = mixed_backlog(&tag, agents, events);
    publish_all(&session, &config.inbound_exchange, &setup).await;
    let team = Workers::start(&config, 1, batch_size);
    team.wait_handled(setup.len() as u64).await;
    team.stop();
    publish_all(&session, &config.inbound_exchange, &backlog).await;
    let team = Workers::start(&config, workers, batch_size);
    let (rate, cpu) = team.timed_drain(backlog.len() as u64).await;
    let batch = team.mean_batch().await;
    team.stop();
    session.close().await;
    cleanup(&config).await;
    (rate, cpu, batch)
}

/// The bare relay: consume → one small Redis script → publish with confirm → ack, on the same
/// queue, with the same prefetch, as a worker. It republishes each event's body unchanged, with
/// the event's type as routing key, to the outbound exchange.
struct Relay {
    /// Events relayed so far.
    done: Arc<AtomicU64>,
    /// When the first event arrived, and the CPU counters then.
    first: Arc<std::sync::Mutex<Option<(Instant, CpuUse)>>>,
    task: tokio::task::JoinHandle<()>,
    _session: Session,
}

impl Relay {
    async fn start(config: &Config) -> Relay {
        let connection = lapin::Connection::connect(&config.amqp_url, Default::default())
            .await
            .unwrap();
        let consume = connection.create_channel().await.unwrap();
        consume
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .unwrap();
        let session = Session::open(config, "relay").await.unwrap();
        let publisher = session.publisher();
        let redis = redis::Client::open(config.redis_url.as_str()).unwrap();
        let redis = redis::aio::ConnectionManager::new(redis).await.unwrap();
        let script = redis::Script::new(
            "local n = redis.call('INCR', KEYS[1]) redis.call('SET', KEYS[2], ARGV[1], 'EX', 60) return n",
        );
        let mut consumer = consume
            .basic_consume(
                config.work_queue.as_str().into(),
                "relay".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let done = Arc::new(AtomicU64::new(0));
        let first: Arc<std::sync::Mutex<Option<(Instant, CpuUse)>>> = Arc::default();
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
                        let _: i64 = script
                            .key(&key)
                            .key(format!("{key}:last"))
                            .arg(&delivery.data[..])
                            .invoke_async(&mut redis)
                            .await
                            .unwrap();
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

    fn stop(self) {
        self.task.abort();
    }
}

/// The bare relay's drain rate over the same backlog, timed from its first event.
async fn relay_drain(events: usize) -> (f64, CpuPerEvents) {
    let tag = format!("bench-{}", uuid::Uuid::new_v4().simple());
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

/// Publishes one event and waits for its confirm.
async fn publish_one(
    publisher: switchboard::broker::Publisher,
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

/// What handles the events in a latency run.
#[derive(Clone, Copy, PartialEq)]
enum Handler {
    /// One `switchboard run` worker: the time is publish → `conversation.assigned`.
    Worker,
    /// The bare relay: the time is publish → the relayed `conversation.created`, the floor any
    /// consumer of this broker and Redis on this machine can reach.
    Relay,
}

/// p50 and p99 (ms) from publishing `conversation.created` to receiving its assignment (or, for
/// the relay, its relayed copy), at `rate` events/s for `seconds`: half of them creations, half
/// the closing of each conversation as soon as it is assigned (so capacity stays available).
async fn latency(rate: u64, seconds: u64, handler: Handler) -> (f64, f64) {
    let rate = rate / 2;
    let tag = format!("bench-{}", uuid::Uuid::new_v4().simple());
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
    let sent: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Arc::default();
    let publisher = session.publisher();
    let sender = {
        let sent = sent.clone();
        let exchange = config.inbound_exchange.clone();
        let tag = tag.clone();
        tokio::spawn(async move {
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
                        &tag,
                        i * 2,
                        "conversation.created",
                        json!({"conversation_id": conversation, "visitor_id": format!("v{i}")}),
                    );
                    sent.lock().unwrap().insert(conversation, Instant::now());
                    let publisher = publisher.clone();
                    let exchange = exchange.clone();
                    confirms.push(tokio::spawn(publish_one(
                        publisher,
                        exchange,
                        "conversation.created",
                        created,
                    )));
                }
            }
            for c in confirms {
                c.await.unwrap();
            }
        })
    };
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
            let publisher = session.publisher();
            let exchange = config.inbound_exchange.clone();
            closes.push(tokio::spawn(publish_one(
                publisher,
                exchange,
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

/// The run with the median rate, and that rate.
fn median_run(runs: &[(f64, CpuPerEvents)]) -> (f64, CpuPerEvents) {
    let mut sorted = runs.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    sorted[sorted.len() / 2]
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    // `--only a,c` runs some parts; all by default.
    let only = flag("--only");
    let part = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|p| p == name))
    };
    let events = if quick { 5_000 } else { 30_000 };
    let machine = machine();
    let mut report = vec![format!("# Switchboard benchmark\n\nmachine: {machine}; RabbitMQ and Redis on loopback; {events} mixed events per drain\n")];
    let mut line = |text: String| {
        println!("{text}");
        report.push(text);
    };
    let mut chart = Chart::default();

    if part("a") {
        // The machine is shared and noisy: the three handlers take turns, round after round,
        // and each figure is the median of its rounds.
        let rounds = flag("--rounds")
            .map(|n| n.parse().expect("--rounds takes a number"))
            .unwrap_or(if quick { 1 } else { 5 });
        let batch_size = Config::default().batch_size;
        let (mut relays, mut workers, mut unbatched_runs) = (vec![], vec![], vec![]);
        let mut batches = vec![];
        for round in 1..=rounds {
            eprintln!("(a) round {round}/{rounds}: bare relay, worker, worker with batching off…");
            relays.push(relay_drain(events).await);
            let (rate, cpu, batch) = worker_drain(10, events, 1, batch_size).await;
            workers.push((rate, cpu));
            batches.push(batch);
            let (rate, cpu, _) = worker_drain(10, events, 1, 1).await;
            unbatched_runs.push((rate, cpu));
        }
        let (relay, relay_cpu) = median_run(&relays);
        let (worker, worker_cpu) = median_run(&workers);
        let (unbatched, unbatched_cpu) = median_run(&unbatched_runs);
        let batch = median(&batches);
        line("## (a) one worker vs the bare relay\n".into());
        line(format!("Median of {rounds} rounds (each round drains with the relay, the worker, then the worker with batching off). The worker applies events that arrived together in one Redis call (`SWITCHBOARD_BATCH_SIZE`, default {batch_size}; {batch:.1} events per batch); the relay handles one event at a time.\n"));
        line(format!(
            "| bare relay | worker | ratio | worker, batching off | ratio |\n|---|---|---|---|---|\n| {relay:.0} ev/s | {worker:.0} ev/s | {:.2} | {unbatched:.0} ev/s | {:.2} |\n",
            worker / relay,
            unbatched / relay
        ));
        let rates = |runs: &[(f64, CpuPerEvents)]| {
            runs.iter()
                .map(|(rate, _)| format!("{rate:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        line(format!(
            "Every round, ev/s: bare relay {}; worker {}; batching off {}.\n",
            rates(&relays),
            rates(&workers),
            rates(&unbatched_runs)
        ));
        // A round's relay and worker drain back to back, under much the same load from the
        // rest of the machine: the median of the rounds' own ratios pairs them.
        let paired = |runs: &[(f64, CpuPerEvents)]| {
            let ratios: Vec<f64> = runs
                .iter()
                .zip(&relays)
                .map(|((rate, _), (relay, _))| rate / relay)
                .collect();
            median(&ratios)
        };
        line(format!(
            "Median of the rounds' own ratios (each round's worker over that round's relay): worker {:.2}, batching off {:.2}.\n",
            paired(&workers),
            paired(&unbatched_runs)
        ));
        line("CPU ms per 1,000 events in the median round (where the time goes; all processes share the machine's cores):\n".into());
        line("| | RabbitMQ | Redis | handler process | total | machine busy |\n|---|---|---|---|---|---|".into());
        for (name, cpu) in [
            ("bare relay", relay_cpu),
            ("worker", worker_cpu),
            ("worker, batching off", unbatched_cpu),
        ] {
            line(format!(
                "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}% |",
                cpu.rabbitmq,
                cpu.redis,
                cpu.handler,
                cpu.rabbitmq + cpu.redis + cpu.handler,
                cpu.busy * 100.0
            ));
        }
        line(String::new());
        chart.panel(
            &format!("(a) drain rate, ratio {:.2}", worker / relay),
            "ev/s",
            vec![
                ("bare relay".into(), relay),
                ("worker".into(), worker),
                ("batching off".into(), unbatched),
            ],
        );
    }

    if part("b") {
        line("## (b) publish → conversation.assigned latency\n".into());
        line("The bare relay's figure (publish → relayed copy, same events) is the floor this broker, Redis and machine allow.\n".into());
        line("| events/s | worker p50 | worker p99 | bare relay p50 | bare relay p99 |\n|---|---|---|---|---|".into());
        let mut bars = vec![];
        let seconds = if quick { 2 } else { 5 };
        for rate in [500, 2000] {
            eprintln!("(b) {rate} events/s…");
            let (p50, p99) = latency(rate, seconds, Handler::Worker).await;
            let (relay_p50, relay_p99) = latency(rate, seconds, Handler::Relay).await;
            line(format!(
                "| {rate} | {p50:.2} ms | {p99:.2} ms | {relay_p50:.2} ms | {relay_p99:.2} ms |"
            ));
            bars.push((format!("worker p99\n{rate}/s"), p99));
            bars.push((format!("relay p99\n{rate}/s"), relay_p99));
        }
        line(String::new());
        chart.panel("(b) publish → assigned latency", "ms", bars);
    }

    // Parts (c) and (d) take the median of three drains each (one with --quick): a single
    // drain on this shared machine can come out a third slow.
    let drains = if quick { 1 } else { 3 };
    let median_drain = |agents: usize, workers: usize| async move {
        let mut rates = vec![];
        for _ in 0..drains {
            let (rate, _, _) =
                worker_drain(agents, events, workers, Config::default().batch_size).await;
            rates.push(rate);
        }
        median(&rates)
    };
    if part("c") {
        line("## (c) team size\n".into());
        line(format!("Median of {drains} drains each.\n"));
        eprintln!("(c) team size…");
        let small = median_drain(10, 1).await;
        let large = median_drain(10_000, 1).await;
        line(format!("| 10 agents | 10,000 agents | ratio |\n|---|---|---|\n| {small:.0} ev/s | {large:.0} ev/s | {:.2} |\n", large / small));
        chart.panel(
            &format!("(c) team size, ratio {:.2}", large / small),
            "ev/s",
            vec![("10 agents".into(), small), ("10,000 agents".into(), large)],
        );
    }
    if part("d") {
        line("## (d) workers\n".into());
        line(format!("Median of {drains} drains each.\n"));
        line("| workers | drain rate |\n|---|---|".into());
        let mut bars = vec![];
        for workers in [1, 2, 4] {
            eprintln!("(d) {workers} workers…");
            let rate = median_drain(10, workers).await;
            line(format!("| {workers} | {rate:.0} ev/s |"));
            bars.push((
                format!("{workers} worker{}", if workers > 1 { "s" } else { "" }),
                rate,
            ));
        }
        line(String::new());
        chart.panel("(d) workers", "ev/s", bars);
    }
    if part("e") {
        line("## (e) Redis time per event, by type (one FCALL at a time, no broker)\n".into());
        line("Read from Redis's slow log at threshold 0, which adds its own cost to every command: compare the rows, not the absolute figures.\n".into());
        line("| event type | events | µs in Redis (mean) | Redis commands run (mean) | µs per call, client side (mean) |\n|---|---|---|---|---|".into());
        for (event_type, count, redis_us, commands, client_us) in redis_time_by_type(events).await {
            line(format!(
                "| {event_type} | {count} | {redis_us:.0} | {commands:.1} | {client_us:.0} |"
            ));
        }
        line(String::new());
    }
    if part("f") {
        line("## (f) Redis CPU per event (batches straight through the store, no broker)\n".into());
        line(format!("The backlog of (a), applied in batches of {} (one call at a time), three times; Redis's own CPU time (user + system) per event, median: the decision's cost, the largest part of what separates the worker from the relay, free of the broker and steadier than drain rates on a shared machine.\n", Config::default().batch_size));
        let mut runs = vec![];
        for _ in 0..3 {
            runs.push(redis_cpu_per_event(events, Config::default().batch_size.into()).await);
        }
        let one = redis_cpu_per_event(events, 1).await;
        line(format!(
            "| batches of {} | batches of 1 |\n|---|---|\n| {:.1} µs | {one:.1} µs |\n",
            Config::default().batch_size,
            median(&runs)
        ));
    }
    std::fs::create_dir_all("bench-results").unwrap();
    std::fs::write("bench-results/latest.md", report.join("\n") + "\n").unwrap();
    std::fs::write("bench-results/latest.svg", chart.svg(&machine)).unwrap();
    println!("\nwritten to bench-results/latest.md and bench-results/latest.svg");
}

/// The store a worker with this configuration would use.
async fn store(config: &Config) -> switchboard::store::Store {
    switchboard::store::Store::connect(
        std::slice::from_ref(&config.redis_url),
        switchboard::store::StoreOptions::from_config(config),
    )
    .await
    .unwrap()
}

/// Redis CPU microseconds per event for the mixed backlog (after its setup) applied straight
/// through the store in batches of `batch` events, one call at a time.
async fn redis_cpu_per_event(events: usize, batch: usize) -> f64 {
    let tag = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config = Config::default();
    let store = store(&config).await;
    let (setup, backlog) = mixed_backlog(&tag, 10, events);
    let decode = |bodies: &[Vec<u8>]| -> Vec<_> {
        bodies
            .iter()
            .map(|body| switchboard::contract::decode(body).unwrap())
            .collect()
    };
    let (setup, backlog) = (decode(&setup), decode(&backlog));
    let now = || switchboard::clock::Clock::now_ms(&switchboard::clock::SystemClock);
    for event in &setup {
        store.apply(event, now()).await.unwrap();
    }
    let before = cpu_seconds_named("redis-server");
    for chunk in backlog.chunks(batch) {
        let chunk: Vec<_> = chunk.iter().map(Into::into).collect();
        store.apply_batch(&chunk, now()).await.unwrap();
    }
    let used = cpu_seconds_named("redis-server") - before;
    forget_keys(&config, &format!("sb:{{{tag}}}:*")).await;
    used * 1e6 / backlog.len() as f64
}

/// Applies the mixed backlog straight through the store, one event at a time, and reads Redis's
/// own time for each FCALL from its slow log (threshold 0 for the duration, then restored): the
/// cost of the apply code by event type, free of the broker and of other processes' load.
async fn redis_time_by_type(events: usize) -> Vec<(String, usize, f64, f64, f64)> {
    let tag = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config = Config::default();
    let store = store(&config).await;
    let set = |name: &'static str, value: String| {
        let store = store.clone();
        async move {
            let _: () = store
                .query(redis::cmd("CONFIG").arg("SET").arg(name).arg(value))
                .await
                .unwrap();
        }
    };
    let get = |name: &'static str| {
        let store = store.clone();
        async move {
            let pair: Vec<String> = store
                .query(redis::cmd("CONFIG").arg("GET").arg(name))
                .await
                .unwrap();
            pair[1].clone()
        }
    };
    let (threshold, length) = (
        get("slowlog-log-slower-than").await,
        get("slowlog-max-len").await,
    );
    // Redis 7 logs the commands a function runs too: room for every one of a batch.
    set("slowlog-max-len", "65536".into()).await;
    let _: () = store
        .query(redis::cmd("SLOWLOG").arg("RESET"))
        .await
        .unwrap();
    set("slowlog-log-slower-than", "0".into()).await;

    let (setup, backlog) = mixed_backlog(&tag, 10, events);
    let mut by_type: std::collections::BTreeMap<String, (usize, f64, usize)> = Default::default();
    let mut client_us: HashMap<String, (usize, f64)> = HashMap::new();
    // Each event is applied at its own `now` (a millisecond apart), which names it in the log:
    // `now` → event type.
    let mut types: HashMap<String, &'static str> = HashMap::new();
    let start_ms = switchboard::clock::Clock::now_ms(&switchboard::clock::SystemClock);
    for (i, body) in setup.iter().chain(&backlog).enumerate() {
        let event = switchboard::contract::decode(body).unwrap();
        let now_ms = start_ms + i as i64;
        types.insert(now_ms.to_string(), event.kind.type_name());
        let started = Instant::now();
        store.apply(&event, now_ms).await.unwrap();
        let client = client_us.entry(event.kind.type_name().into()).or_default();
        client.0 += 1;
        client.1 += started.elapsed().as_secs_f64() * 1e6;
        if i % 500 == 499 || i == setup.len() + backlog.len() - 1 {
            let log: Vec<redis::Value> = store
                .query(redis::cmd("SLOWLOG").arg("GET").arg(65536))
                .await
                .unwrap();
            let _: () = store
                .query(redis::cmd("SLOWLOG").arg("RESET"))
                .await
                .unwrap();
            // Newest first: oldest first, the commands a call ran come just before the call.
            let mut inner = 0;
            for entry in log.into_iter().rev() {
                // [id, timestamp, microseconds, [command, args…], …]
                let redis::Value::Array(fields) = entry else {
                    continue;
                };
                let (Some(redis::Value::Int(us)), Some(redis::Value::Array(args))) =
                    (fields.get(2), fields.get(3))
                else {
                    continue;
                };
                let text = |v: &redis::Value| match v {
                    redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => String::new(),
                };
                match args.first().map(text).as_deref() {
                    Some("FCALL") => {}
                    Some("SLOWLOG" | "CONFIG") => continue,
                    _ => {
                        inner += 1;
                        continue;
                    }
                }
                // The slow log keeps only the first 32 arguments, which leaves out the event
                // type: the call's `now`, the first argument after the keys, names it.
                let now = args.get(3 + PROJECT_KEYS.len()).map(text);
                let Some(event_type) = now.and_then(|now| types.get(&now)) else {
                    continue;
                };
                let entry = by_type.entry(event_type.to_string()).or_default();
                entry.0 += 1;
                entry.1 += *us as f64;
                entry.2 += std::mem::take(&mut inner);
            }
        }
    }
    set("slowlog-log-slower-than", threshold).await;
    set("slowlog-max-len", length).await;
    forget_keys(&config, &format!("sb:{{{tag}}}:*")).await;
    by_type
        .into_iter()
        .map(|(t, (n, redis, commands))| {
            let (calls, client) = client_us.get(&t).copied().unwrap_or((1, 0.0));
            (
                t,
                n,
                redis / n as f64,
                commands as f64 / n as f64,
                client / calls as f64,
            )
        })
        .collect()
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    format!("{cores} cores, {model}")
}

/// A chart panel: title, unit, and labelled bars.
type Panel = (String, String, Vec<(String, f64)>);

/// Bar charts of one run, one panel per part, as SVG.
#[derive(Default)]
struct Chart {
    panels: Vec<Panel>,
}

impl Chart {
    fn panel(&mut self, title: &str, unit: &str, bars: Vec<(String, f64)>) {
        self.panels.push((title.into(), unit.into(), bars));
    }

    fn svg(&self, machine: &str) -> String {
        const PANEL_W: f64 = 300.0;
        const PANEL_H: f64 = 260.0;
        const BAR_AREA: f64 = 170.0;
        let width = PANEL_W * self.panels.len().max(1) as f64;
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{}" font-family="sans-serif" font-size="11"><rect width="100%" height="100%" fill="white"/><text x="8" y="16" font-size="13">Switchboard benchmark: {}</text>"#,
            PANEL_H + 30.0,
            escape(machine)
        );
        for (i, (title, unit, bars)) in self.panels.iter().enumerate() {
            let x0 = i as f64 * PANEL_W + 20.0;
            let top = 50.0;
            let max = bars.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1e-9);
            svg += &format!(
                r#"<text x="{x0}" y="{}" font-size="12" font-weight="bold">{}</text>"#,
                top - 14.0,
                escape(title)
            );
            let bar_w = (PANEL_W - 40.0) / bars.len().max(1) as f64;
            for (j, (label, value)) in bars.iter().enumerate() {
                let h = value / max * BAR_AREA;
                let x = x0 + j as f64 * bar_w;
                let y = top + BAR_AREA - h;
                let shown = if *value < 100.0 {
                    format!("{value:.1}")
                } else {
                    format!("{value:.0}")
                };
                // One line of the label per `\n`.
                let lines: String = label
                    .split('\n')
                    .enumerate()
                    .map(|(k, part)| {
                        format!(
                            r#"<tspan x="{:.1}" dy="{}">{}</tspan>"#,
                            x + bar_w * 0.35,
                            if k == 0 { 0 } else { 13 },
                            escape(part)
                        )
                    })
                    .collect();
                svg += &format!(
                    r##"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="#4a7bd0"/><text x="{:.1}" y="{:.1}" text-anchor="middle">{shown} {}</text><text x="{:.1}" y="{:.1}" text-anchor="middle">{lines}</text>"##,
                    bar_w * 0.7,
                    x + bar_w * 0.35,
                    y - 4.0,
                    escape(unit),
                    x + bar_w * 0.35,
                    top + BAR_AREA + 16.0,
                );
            }
        }
        svg + "</svg>\n"
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
