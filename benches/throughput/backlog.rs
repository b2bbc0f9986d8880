//! What the drains chew on: a team, online, then a mix of events as a platform publishes them
//! (60% created, 30% closed, 10% status changes), in the envelope every producer writes.

use serde_json::{json, Value};
use switchboard::broker::Session;
use switchboard::cli::publish::publish_events;
use switchboard::contract::CloudEvent;

/// One event of `project` as a platform publishes it: its `time` (ms precision) grows with its
/// number, so the store's order checks run as they do in production.
pub fn event(project: &str, id: u64, event_type: &str, data: Value) -> Vec<u8> {
    static START_MS: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let start = *START_MS.get_or_init(|| chrono::Utc::now().timestamp_millis());
    CloudEvent::new(
        project,
        format!("{project}-{id}"),
        "/bench",
        event_type,
        data,
    )
    .time(switchboard::clock::rfc3339(start + id as i64))
    .to_bytes()
}

/// The setup (a team of `agents`, online) and then `n` events: conversations created and
/// closed, with status changes.
pub fn mixed_backlog(project: &str, agents: usize, n: usize) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
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

/// Publishes the events as a platform does, 500 at a time with confirms.
pub async fn publish_all(session: &Session, exchange: &str, bodies: &[Vec<u8>]) {
    let publisher = session.publisher();
    for chunk in bodies.chunks(500) {
        publish_events(&publisher, exchange, chunk).await.unwrap();
    }
}
