//! One project driven through the store directly (no broker), with a settable clock: the
//! allocation decisions, event by event, with every output checked against its schema.

use std::sync::Mutex;

use serde_json::{json, Value};
use switchboard::contract::outbound::TimerRequest;
use switchboard::contract::{outbound, Id, InboundEvent, OutboundEvent};
use switchboard::store::{interface, keys, Applied, Store};

use super::events::Platform;
use super::redis::store;
use super::schemas::assert_valid_output;

/// Drives one project's state through the store directly, with a settable clock.
pub struct Project {
    pub id: String,
    pub store: Store,
    pub now_ms: i64,
    /// Builds its events, so that no two of them share an id.
    platform: Mutex<Platform>,
}

impl Project {
    pub async fn new() -> Project {
        Project::on(store().await)
    }

    /// A new project on `store` (a private Redis, say).
    pub fn on(store: Store) -> Project {
        Project::of(store, Platform::new())
    }

    /// The project `id` on `store` (its keys deleted when the test process exits).
    pub fn named(store: Store, id: &str) -> Project {
        super::note_project(id);
        Project::of(store, Platform::of(id))
    }

    fn of(store: Store, platform: Platform) -> Project {
        Project {
            id: platform.project.clone(),
            store,
            now_ms: 1_795_000_000_000,
            platform: Mutex::new(platform),
        }
    }

    /// The next event of this project, to apply (or batch) by hand.
    pub fn event(&self, event_type: &str, data: Value) -> InboundEvent {
        self.platform.lock().unwrap().inbound(event_type, data)
    }

    pub async fn apply(&self, event_type: &str, data: Value) -> Vec<OutboundEvent> {
        self.apply_event(&self.event(event_type, data))
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
            let body =
                outbound::envelope(&event.project, &event.id, i, "2026-11-22T10:00:00Z", output);
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
        self.online_team(json!(patches)).await;
    }

    /// Upserts agents (an array of the patches `agent.upserted` carries), then sets each one
    /// online, in their order.
    pub async fn online_team(&self, agents: Value) {
        let ids: Vec<String> = agents
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["agent_id"].as_str().unwrap().to_string())
            .collect();
        self.apply("agent.upserted", json!({ "agents": agents }))
            .await;
        for id in ids {
            self.status(&id, "online").await;
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

    /// A conversation on a channel.
    pub async fn create_on(&self, conversation: &str, channel: &str) -> Vec<OutboundEvent> {
        self.apply(
            "conversation.created",
            json!({"conversation_id": conversation, "visitor_id": format!("v-{conversation}"),
                   "channel": channel}),
        )
        .await
    }

    /// The visitor writes on the conversation.
    pub async fn message(&self, conversation: &str) -> Applied {
        self.apply_event(&self.event(
            "message.received",
            json!({"conversation_id": conversation, "visitor_id": format!("v-{conversation}")}),
        ))
        .await
    }

    /// Fires an armed timer, as its delay queue would (the test sets the clock).
    pub async fn fire(&self, timer: &TimerRequest) -> Applied {
        self.apply_event(&self.event("timer.fired", timer.data.clone()))
            .await
    }

    pub async fn close(&self, conversation: &str) -> Vec<OutboundEvent> {
        self.apply(
            "conversation.closed",
            json!({"conversation_id": conversation}),
        )
        .await
    }

    /// How many open conversations an agent holds.
    pub async fn load(&self, agent: &str) -> i64 {
        self.store.load(&self.project(), agent).await.unwrap() as i64
    }

    /// The waiting conversations, in the order they are served.
    pub async fn waiting(&self) -> Vec<String> {
        let waiting = self.store.waiting(&self.project(), None).await.unwrap();
        waiting.into_iter().map(|w| w.conversation_id).collect()
    }

    /// The fields of the hash `key`, sorted.
    pub async fn fields(&self, key: &str) -> Vec<String> {
        let mut fields: Vec<String> = self
            .store
            .query(redis::cmd("HKEYS").arg(key))
            .await
            .unwrap();
        fields.sort();
        fields
    }

    /// How the project's visitors are spread over buckets (store layout 2): how many buckets,
    /// and how many visitors they hold; (0, 0) where they are not.
    pub async fn visitor_spread(&self) -> (u64, u64) {
        let spread: Option<String> = self
            .store
            .query(
                redis::cmd("HGET")
                    .arg(self.key("meta"))
                    .arg(interface::VISITOR_BUCKETS_FIELD),
            )
            .await
            .unwrap();
        spread.map_or((0, 0), |spread| {
            let parts: Vec<u64> = spread.split('|').map(|n| n.parse().unwrap()).collect();
            (parts[0], parts[1])
        })
    }

    /// The visitors Redis remembers, sorted: those in `visitors` and, where the project's
    /// visitors are spread over buckets (store layout 2), those in each bucket.
    pub async fn remembered_visitors(&self) -> Vec<String> {
        let (buckets, _) = self.visitor_spread().await;
        let mut visitors = vec![];
        for name in std::iter::once(self.key("visitors"))
            .chain((0..buckets).map(|n| keys::bucket_key(&self.project(), "visitors", n)))
        {
            let held: Vec<String> = self
                .store
                .query(redis::cmd("HKEYS").arg(name))
                .await
                .unwrap();
            visitors.extend(held);
        }
        visitors.sort();
        visitors
    }

    /// The project's id, as the store's keys are built from it.
    pub fn project(&self) -> Id {
        Id::parse(&self.id).unwrap()
    }

    /// The name of one of the project's keys in Redis (`sb:{<project>}:<name>`).
    pub fn key(&self, name: &str) -> String {
        keys::project_key(&self.project(), name)
    }
}
