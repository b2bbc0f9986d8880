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

pub fn body(project: &str, id: &str, event_type: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "specversion": "1.0", "id": id, "source": "/tests", "type": event_type,
        "time": "2026-11-22T10:00:00Z", "project": project, "data": data
    }))
    .unwrap()
}

pub fn event(project: &str, event_type: &str, data: Value) -> InboundEvent {
    let id = uuid::Uuid::new_v4().to_string();
    decode(&body(project, &id, event_type, data)).expect("test events are valid")
}

pub async fn store() -> Store {
    let nodes: Vec<String> = redis_url().split(',').map(|s| s.trim().to_string()).collect();
    Store::connect(
        &nodes,
        StoreOptions {
            dedupe_ttl: std::time::Duration::from_secs(3600),
            closed_retention: std::time::Duration::from_secs(3600),
        },
    )
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
        Project { id: unique("p"), store: store().await, now_ms: 1_795_000_000_000 }
    }

    pub async fn apply(&self, event_type: &str, data: Value) -> Vec<OutboundEvent> {
        self.apply_event(&event(&self.id, event_type, data)).await.outputs
    }

    pub async fn apply_event(&self, event: &InboundEvent) -> Applied {
        self.store.apply(event, self.now_ms).await.expect("store applies the event")
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
        self.apply("agent.upserted", json!({ "agents": patches })).await;
        for (id, _) in agents {
            self.status(id, "online").await;
        }
    }

    pub async fn status(&self, agent: &str, status: &str) -> Vec<OutboundEvent> {
        self.apply("agent.status_changed", json!({"agent_id": agent, "status": status})).await
    }

    pub async fn create(&self, conversation: &str) -> Vec<OutboundEvent> {
        self.apply(
            "conversation.created",
            json!({"conversation_id": conversation, "visitor_id": format!("v-{conversation}")}),
        )
        .await
    }

    pub async fn close(&self, conversation: &str) -> Vec<OutboundEvent> {
        self.apply("conversation.closed", json!({"conversation_id": conversation})).await
    }

    /// Open conversations per agent, read from Redis.
    pub async fn load(&self, agent: &str) -> i64 {
        let key = format!("sb:{{{}}}:owned", self.id);
        let cmd = redis::cmd("ZLEXCOUNT")
            .arg(key)
            .arg(format!("[{agent}|"))
            .arg(format!("[{agent}|\u{ff}"))
            .clone();
        self.store.query(&cmd).await.unwrap()
    }

    pub async fn waiting(&self) -> Vec<String> {
        let key = format!("sb:{{{}}}:waiting", self.id);
        let members: Vec<String> =
            self.store.query(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1)).await.unwrap();
        members.into_iter().map(|m| m.split_once('|').unwrap().1.to_string()).collect()
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
