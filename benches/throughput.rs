//! Throughput and latency of Switchboard workers against the machine's real RabbitMQ and Redis,
//! side by side with a bare relay built here, in one run:
//!
//! (a) drain rate of one worker over a backlog of mixed events vs the bare relay (consume → one
//!     small Redis script → publish with confirm → ack; same queue type, durability, prefetch);
//! (b) publish → `conversation.assigned` latency p50/p99 at fixed rates;
//! (c) drain rate with 10 vs 10,000 agents;
//! (d) drain rate with 1, 2 and 4 workers.
//!
//! Workers are `switchboard run` processes (release build); drains are timed from the moment the
//! backlog is in the queue and the workers start, to the moment they have handled every event
//! (read from their `/metrics`). `cargo bench --bench throughput` (add `-- --quick` for a short
//! run); results are printed and written to `bench-results/`.

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

fn config(tag: &str) -> Config {
    Config {
        inbound_exchange: format!("{tag}.in"),
        work_queue: format!("{tag}.work"),
        outbound_exchange: format!("{tag}.out"),
        dead_letter_queue: format!("{tag}.dead"),
        ..Config::default()
    }
}

fn event(project: &str, id: u64, event_type: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "specversion": "1.0", "id": format!("{project}-{id}"), "source": "/bench",
        "type": event_type, "project": project, "data": data,
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
    fn start(config: &Config, count: usize) -> Workers {
        let mut children = vec![];
        let mut ports = vec![];
        for _ in 0..count {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
                .arg("run")
                .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{port}"))
                .env("SWITCHBOARD_INBOUND_EXCHANGE", &config.inbound_exchange)
                .env("SWITCHBOARD_WORK_QUEUE", &config.work_queue)
                .env("SWITCHBOARD_OUTBOUND_EXCHANGE", &config.outbound_exchange)
                .env("SWITCHBOARD_DEAD_LETTER_QUEUE", &config.dead_letter_queue)
                .env("RUST_LOG", "warn")
                .spawn()
                .unwrap();
            children.push(child);
            ports.push(port);
        }
        Workers { children, ports }
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

    async fn wait_handled(&self, n: u64) {
        while self.handled().await < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
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
async fn worker_drain(agents: usize, events: usize, workers: usize) -> f64 {
    let tag = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config = config(&tag);
    let session = Session::open(&config, "bench").await.unwrap();
    let (setup, backlog) = mixed_backlog(&tag, agents, events);
    publish_all(&session, &config.inbound_exchange, &setup).await;
    let team = Workers::start(&config, 1);
    team.wait_handled(setup.len() as u64).await;
    team.stop();
    publish_all(&session, &config.inbound_exchange, &backlog).await;
    let team = Workers::start(&config, workers);
    let started = Instant::now();
    team.wait_handled(backlog.len() as u64).await;
    let rate = backlog.len() as f64 / started.elapsed().as_secs_f64();
    team.stop();
    session.close().await;
    cleanup(&config).await;
    rate
}

/// The bare relay: consume → one small Redis script → publish with confirm → ack.
async fn relay_drain(events: usize) -> f64 {
    let tag = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config = config(&tag);
    let session = Session::open(&config, "bench").await.unwrap();
    let (_, backlog) = mixed_backlog(&tag, 10, events);
    publish_all(&session, &config.inbound_exchange, &backlog).await;

    let connection = lapin::Connection::connect(&config.amqp_url, Default::default())
        .await
        .unwrap();
    let consume = connection.create_channel().await.unwrap();
    consume
        .basic_qos(config.prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    let relay_session = Session::open(&config, "relay").await.unwrap();
    let publisher = relay_session.publisher();
    let redis = redis::Client::open(config.redis_url.as_str()).unwrap();
    let redis = redis::aio::ConnectionManager::new(redis).await.unwrap();
    let script = redis::Script::new(
        "local n = redis.call('INCR', KEYS[1]) redis.call('SET', KEYS[2], ARGV[1], 'EX', 60) return n",
    );
    let done = Arc::new(AtomicU64::new(0));
    let mut consumer = consume
        .basic_consume(
            config.work_queue.as_str().into(),
            "relay".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let out = config.outbound_exchange.clone();
    for _ in 0..events {
        let Some(Ok(delivery)) = consumer.next().await else {
            break;
        };
        let (publisher, mut redis, script, done, out) = (
            publisher.clone(),
            redis.clone(),
            script.clone(),
            done.clone(),
            out.clone(),
        );
        let key = format!("{{bench}}:{tag}");
        tokio::spawn(async move {
            let _: i64 = script
                .key(&key)
                .key(format!("{key}:last"))
                .arg(&delivery.data[..])
                .invoke_async(&mut redis)
                .await
                .unwrap();
            publisher
                .publish_all(vec![Message {
                    exchange: &out,
                    routing_key: "relayed",
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
    while done.load(Ordering::Relaxed) < events as u64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let rate = events as f64 / started.elapsed().as_secs_f64();
    relay_session.close().await;
    session.close().await;
    cleanup(&config).await;
    rate
}

/// p50 and p99 (ms) from publishing `conversation.created` to receiving its assignment, at
/// `rate` events/s for `seconds`: half of them creations, half the closing of each assigned
/// conversation (so capacity stays available).
async fn latency(rate: u64, seconds: u64) -> (f64, f64) {
    let rate = rate / 2;
    let tag = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config = config(&tag);
    let session = Session::open(&config, "bench").await.unwrap();
    let mut decisions = session.tap(&config.outbound_exchange).await.unwrap();
    let (setup, _) = mixed_backlog(&tag, 50, 0);
    publish_all(&session, &config.inbound_exchange, &setup).await;
    let team = Workers::start(&config, 1);
    team.wait_handled(setup.len() as u64).await;

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
                    confirms.push(tokio::spawn(async move {
                        publisher
                            .publish_all(vec![Message {
                                exchange: &exchange,
                                routing_key: "conversation.created",
                                body: &created,
                                properties: broker::json_properties(),
                            }])
                            .await
                            .unwrap();
                    }));
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
        if value["type"] == "conversation.assigned" && value["data"]["reason"] == "new" {
            let conversation = value["data"]["conversation_id"]
                .as_str()
                .unwrap()
                .to_string();
            if let Some(at) = sent.lock().unwrap().remove(&conversation) {
                latencies.push(now.duration_since(at).as_secs_f64() * 1000.0);
            }
            closes.push(event(
                &tag,
                1_000_000_000 + latencies.len() as u64,
                "conversation.closed",
                json!({"conversation_id": conversation}),
            ));
            if closes.len() >= 50 {
                let batch = std::mem::take(&mut closes);
                let session_publisher = session.publisher();
                let exchange = config.inbound_exchange.clone();
                tokio::spawn(async move {
                    let messages = batch
                        .iter()
                        .map(|b| Message {
                            exchange: &exchange,
                            routing_key: "conversation.closed",
                            body: b,
                            properties: broker::json_properties(),
                        })
                        .collect();
                    session_publisher.publish_all(messages).await.unwrap();
                });
            }
        }
    }
    sender.await.unwrap();
    team.stop();
    session.close().await;
    cleanup(&config).await;
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    assert!(!latencies.is_empty(), "no assignment received");
    (at(0.5), at(0.99))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    // `--only a,c` runs some parts; all by default.
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let part = |name: &str| {
        only.as_deref()
            .is_none_or(|o| o.split(',').any(|p| p == name))
    };
    let events = if quick { 5_000 } else { 30_000 };
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default()
    );
    let mut report = vec![format!("# Switchboard benchmark\n\nmachine: {machine}; RabbitMQ and Redis on loopback; {events} mixed events per drain\n")];
    let mut line = |text: String| {
        println!("{text}");
        report.push(text);
    };

    if part("a") {
        eprintln!("(a) bare relay…");
        let relay = relay_drain(events).await;
        eprintln!("(a) worker…");
        let worker = worker_drain(10, events, 1).await;
        line("## (a) one worker vs the bare relay\n".into());
        line(format!("| bare relay | worker | ratio |\n|---|---|---|\n| {relay:.0} ev/s | {worker:.0} ev/s | {:.2} |\n", worker / relay));
    }

    if part("b") {
        line("## (b) publish → conversation.assigned latency\n".into());
        line("| events/s | p50 | p99 |\n|---|---|---|".into());
        for rate in [500, 2000] {
            let (p50, p99) = latency(rate, if quick { 2 } else { 5 }).await;
            line(format!("| {rate} | {p50:.2} ms | {p99:.2} ms |"));
        }
        line(String::new());
    }

    if part("c") {
        line("## (c) team size\n".into());
        eprintln!("(c) team size…");
        let small = worker_drain(10, events, 1).await;
        let large = worker_drain(10_000, events, 1).await;
        line(format!("| 10 agents | 10,000 agents | ratio |\n|---|---|---|\n| {small:.0} ev/s | {large:.0} ev/s | {:.2} |\n", large / small));
    }
    if part("d") {
        line("## (d) workers\n".into());
        line("| workers | drain rate |\n|---|---|".into());
        for workers in [1, 2, 4] {
            let rate = worker_drain(10, events, workers).await;
            line(format!("| {workers} | {rate:.0} ev/s |"));
        }
    }
    std::fs::create_dir_all("bench-results").unwrap();
    std::fs::write("bench-results/latest.md", report.join("\n") + "\n").unwrap();
    println!("\nwritten to bench-results/latest.md");
}
