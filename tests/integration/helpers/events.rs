//! The events a platform sends, built with the crate's one CloudEvents builder: the tests
//! publish what a platform would, in the envelope every producer writes.

use std::fmt::Display;

use serde_json::{json, Value};
use switchboard::contract::{decode, CloudEvent, Id, InboundEvent};

use super::names::unique;

/// The `time` of test events that do not state one of their own: all the same instant, so
/// events about one thing are applied in the order workers apply them.
const TEST_TIME: &str = "2026-11-22T10:00:00Z";

/// Builds the events a platform would send for one project: ids `ev-1`, `ev-2`… in the order
/// they are built, so no two events of one builder are taken for duplicates.
pub struct Platform {
    pub project: String,
    next: u64,
}

impl Platform {
    /// The events of a new project.
    pub fn new() -> Platform {
        let project = unique("p");
        super::note_project(&project);
        Platform::of(&project)
    }

    /// The events of `project`: one a test already knows, or an id the contract rejects.
    pub fn of(project: &str) -> Platform {
        Platform {
            project: project.into(),
            next: 0,
        }
    }

    pub fn event(&mut self, event_type: &str, data: Value) -> Vec<u8> {
        self.event_at(event_type, data, Some(TEST_TIME))
    }

    /// An event with its own `time` (none when `None`).
    pub fn event_at(&mut self, event_type: &str, data: Value, time: Option<&str>) -> Vec<u8> {
        self.next += 1;
        let event = CloudEvent::new(&self.project, self.last_id(), "/tests", event_type, data);
        match time {
            Some(time) => event.time(time),
            None => event,
        }
        .to_bytes()
    }

    /// The next event, decoded as a worker decodes it: for tests that drive the store directly.
    pub fn inbound(&mut self, event_type: &str, data: Value) -> InboundEvent {
        decode(&self.event(event_type, data)).expect("test events are valid")
    }

    /// The project's id, as the store and the worker name it.
    pub fn id(&self) -> Id {
        Id::parse(&self.project).expect("test projects have valid ids")
    }

    /// The id of the last event built.
    pub fn last_id(&self) -> String {
        format!("ev-{}", self.next)
    }

    /// A team: the agents upserted with their `max_concurrent`, then each online.
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

    /// `conversation.created` of `c<i>` for each `i` of `numbers`, in that order (a burst).
    pub fn created_each<T: Display>(
        &mut self,
        numbers: impl IntoIterator<Item = T>,
    ) -> Vec<Vec<u8>> {
        numbers
            .into_iter()
            .map(|i| self.created(&format!("c{i}")))
            .collect()
    }

    /// `conversation.closed` of `c<i>` for each `i` of `numbers`, in that order.
    pub fn closed_each<T: Display>(
        &mut self,
        numbers: impl IntoIterator<Item = T>,
    ) -> Vec<Vec<u8>> {
        numbers
            .into_iter()
            .map(|i| self.closed(&format!("c{i}")))
            .collect()
    }
}
