//! `switchboard demo`: plays a small support team's day, fast, and prints what the workers
//! decide as it happens. It publishes only to the inbound exchange, like a real platform, and
//! reads decisions from the outbound exchange; a worker must be running.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use serde_json::{json, Value};

use crate::broker::{self, Message, Publisher, Session};
use crate::config::Config;
use crate::contract::CloudEvent;

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Project id to play in (default: a fresh `demo-…` id each run).
    #[arg(long)]
    pub project: Option<String>,
    /// New conversations per second.
    #[arg(long, default_value_t = 1.5)]
    pub rate: f64,
    /// Stop after this many seconds (0 = until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
}

struct Demo<'a> {
    config: &'a Config,
    publisher: Publisher,
    project: String,
    sequence: u64,
}

impl Demo<'_> {
    async fn send(&mut self, event_type: &str, data: Value) -> anyhow::Result<()> {
        self.sequence += 1;
        let id = format!("{}-{}", self.project, self.sequence);
        let body = CloudEvent::new(&self.project, id, "/demo", event_type, data)
            .time_ms(chrono::Utc::now().timestamp_millis())
            .to_bytes();
        self.publisher
            .publish_all(vec![Message {
                exchange: &self.config.inbound_exchange,
                routing_key: event_type,
                body: &body,
                properties: broker::json_properties(),
            }])
            .await?;
        Ok(())
    }

    async fn status(&mut self, agent: &str, status: &str) -> anyhow::Result<()> {
        println!("  ·  {agent} is now {status}");
        self.send(
            "agent.status_changed",
            json!({"agent_id": agent, "status": status}),
        )
        .await
    }
}

pub async fn run(config: Config, args: DemoArgs) -> anyhow::Result<()> {
    let session = Session::open(&config, "switchboard-demo").await?;
    let mut decisions = session.tap(&config.outbound_exchange).await?;
    let project = args
        .project
        .unwrap_or_else(|| format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]));
    let mut demo = Demo {
        config: &config,
        publisher: session.publisher(),
        project,
        sequence: 0,
    };

    println!(
        "demo project `{}`: 4 agents, {} new conversations/s",
        demo.project, args.rate
    );
    demo.send(
        "project.configured",
        json!({"mode": "auto", "new_visitors": "least_loaded"}),
    )
    .await?;
    demo.send(
        "agent.upserted",
        json!({"agents": [
            {"agent_id": "alice", "max_concurrent": 3},
            {"agent_id": "bob", "max_concurrent": 2},
            {"agent_id": "carol", "max_concurrent": 2},
            {"agent_id": "dave", "max_concurrent": 1, "auto_assign": false}]}),
    )
    .await?;
    demo.status("alice", "online").await?;
    demo.status("bob", "online").await?;

    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
    let mut arrivals = tokio::time::interval(interval);
    let started = tokio::time::Instant::now();
    let stop_at = (args.seconds > 0).then(|| started + Duration::from_secs(args.seconds));
    let mut open: VecDeque<(String, tokio::time::Instant)> = VecDeque::new();
    let mut next_conversation = 0u64;
    let mut script_step = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = async { match stop_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => break,
            delivery = decisions.next() => {
                let Some(Ok(delivery)) = delivery else { anyhow::bail!("lost the broker connection") };
                let event: Value = serde_json::from_slice(&delivery.data)?;
                if event["project"] == json!(demo.project) {
                    print_decision(&event);
                    if event["type"] == "conversation.assigned" {
                        let id = event["data"]["conversation_id"].as_str().unwrap_or("").to_string();
                        let handling = Duration::from_millis(rand::rng().random_range(2000..6000));
                        open.push_back((id, tokio::time::Instant::now() + handling));
                    }
                }
            }
            _ = arrivals.tick() => {
                next_conversation += 1;
                let id = format!("conv-{next_conversation}");
                let channel = ["web", "whatsapp", "email"][next_conversation as usize % 3];
                demo.send("conversation.created", json!({
                    "conversation_id": id, "visitor_id": format!("visitor-{next_conversation}"),
                    "channel": channel,
                })).await?;
                // Close conversations whose handling time is over.
                let now = tokio::time::Instant::now();
                open.make_contiguous().sort_by_key(|(_, t)| *t);
                while open.front().is_some_and(|(_, t)| *t <= now) {
                    let (id, _) = open.pop_front().expect("checked above");
                    println!("  ✓  {id} closed");
                    demo.send("conversation.closed", json!({"conversation_id": id})).await?;
                }
                // The team changes during the day.
                let elapsed = started.elapsed().as_secs();
                if script_step == 0 && elapsed >= 6 { demo.status("carol", "online").await?; script_step = 1; }
                if script_step == 1 && elapsed >= 14 { demo.status("bob", "offline").await?; script_step = 2; }
                if script_step == 2 && elapsed >= 20 { demo.status("bob", "online").await?; script_step = 3; }
            }
        }
    }
    session.close().await;
    println!(
        "demo over: `switchboard inspect {0}` shows the project as it stands; \
         `switchboard forget {0} --yes` deletes it",
        demo.project
    );
    Ok(())
}

fn print_decision(event: &Value) {
    let data = &event["data"];
    let conversation = data["conversation_id"].as_str().unwrap_or("?");
    match event["type"].as_str().unwrap_or("") {
        "conversation.assigned" => println!(
            "  →  {conversation} assigned to {} ({}{})",
            data["agent_id"].as_str().unwrap_or("?"),
            data["reason"].as_str().unwrap_or("?"),
            data["strategy"]
                .as_str()
                .map(|s| format!(", {s}"))
                .unwrap_or_default(),
        ),
        "conversation.queued" => println!(
            "  …  {conversation} waits ({})",
            data["reason"].as_str().unwrap_or("?")
        ),
        other => println!("  ·  {other} {data}"),
    }
}
