//! JSON Schemas of every event, generated from the types below with schemars.
//!
//! An event's `data` is described by the very type `decode` reads it into (`inbound`,
//! `settings`, `agents`; outputs by `outbound::data`), so a field is declared once. Tests keep
//! the rest honest: example events must pass both the schema and `decode`, and every output the
//! store produces must pass its schema. `switchboard schemas` writes the files under
//! `docs/schemas/`, and a test fails when they differ from these types.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use super::agents::AgentsUpserted;
use super::inbound::{
    AgentRef, ClaimRequested, Conversation, ConversationAgent, ConversationRef, RequeueRequested,
    StatusChanged, TimerFired, TransferRequested,
};
use super::outbound::data::*;
use super::settings::SettingsPatch;
use super::Id;

/// Which way an event travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
    Internal,
}

/// One event type: its name, direction, and the schema of its `data`.
pub struct EventSchema {
    pub event_type: &'static str,
    pub direction: Direction,
    pub summary: &'static str,
    data: fn(&mut SchemaGenerator) -> Schema,
}

macro_rules! event {
    ($name:literal, $dir:ident, $ty:ty, $summary:literal) => {
        EventSchema {
            event_type: $name,
            direction: Direction::$dir,
            summary: $summary,
            data: |g| g.subschema_for::<$ty>(),
        }
    };
}

/// Every event of the contract (and the internal timer event).
pub fn events() -> Vec<EventSchema> {
    vec![
        event!(
            "project.configured",
            Inbound,
            SettingsPatch,
            "Allocation settings, as a JSON merge patch."
        ),
        event!(
            "agent.upserted",
            Inbound,
            AgentsUpserted,
            "Create agents or change some of their fields."
        ),
        event!(
            "agent.removed",
            Inbound,
            AgentRef,
            "The agent leaves; its open conversations are reassigned."
        ),
        event!(
            "agent.status_changed",
            Inbound,
            StatusChanged,
            "The agent's own status in this project."
        ),
        event!(
            "conversation.created",
            Inbound,
            Conversation,
            "A new session."
        ),
        event!(
            "message.received",
            Inbound,
            Conversation,
            "The visitor sent a message."
        ),
        event!(
            "agent.replied",
            Inbound,
            ConversationAgent,
            "The assigned agent answered."
        ),
        event!(
            "conversation.closed",
            Inbound,
            ConversationRef,
            "The conversation is done."
        ),
        event!(
            "agent.claim_requested",
            Inbound,
            ClaimRequested,
            "The agent picks a conversation: that one, or the next waiting one."
        ),
        event!(
            "conversation.transfer_requested",
            Inbound,
            TransferRequested,
            "Hand a conversation to another agent."
        ),
        event!(
            "allocation.decided",
            Inbound,
            ConversationAgent,
            "A custom allocator's answer."
        ),
        event!(
            "conversation.requeue_requested",
            Inbound,
            RequeueRequested,
            "The agent hands the conversation back: it waits again in its first place."
        ),
        event!(
            "timer.fired",
            Internal,
            TimerFired,
            "Internal: a timer armed by an earlier decision is due."
        ),
        event!(
            "conversation.assigned",
            Outbound,
            ConversationAssigned,
            "A conversation got an agent."
        ),
        event!(
            "conversation.queued",
            Outbound,
            ConversationQueued,
            "No agent now: the conversation waits."
        ),
        event!(
            "conversation.offered",
            Outbound,
            ConversationOffered,
            "Offered to these agents; the first claim wins."
        ),
        event!(
            "conversation.unassigned",
            Outbound,
            ConversationUnassigned,
            "The conversation lost its agent."
        ),
        event!(
            "allocation.requested",
            Outbound,
            AllocationRequested,
            "Mode custom: the external allocator is asked to decide."
        ),
        event!(
            "agent.status_changed",
            Outbound,
            AgentStatusAnnounced,
            "A schedule switched the agent's status, or missed assignments set it busy."
        ),
        event!(
            "conversation.queue_position",
            Outbound,
            ConversationQueuePosition,
            "Where a waiting conversation stands in its queue, with the estimated wait."
        ),
        event!(
            "conversation.overflowed",
            Outbound,
            ConversationOverflowed,
            "The conversation no longer waits: the platform decides what follows."
        ),
        event!(
            "command.rejected",
            Outbound,
            CommandRejected,
            "A claim, transfer or decision that cannot be carried out."
        ),
    ]
}

impl EventSchema {
    /// The file name of this event's schema under `docs/schemas/`.
    pub fn file_name(&self) -> String {
        let dir = match self.direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Internal => "internal",
        };
        format!("{dir}/{}.json", self.event_type)
    }

    /// The whole CloudEvent (envelope and data) as a self-contained JSON Schema.
    pub fn schema(&self) -> Value {
        let settings = schemars::generate::SchemaSettings::draft2020_12().with(|s| {
            s.inline_subschemas = true;
        });
        let mut generator = settings.into_generator();
        let data = (self.data)(&mut generator).to_value();
        let mut extensions = serde_json::Map::new();
        extensions.insert("project".into(), Id::json_schema(&mut generator).to_value());
        let mut required = vec!["specversion", "id", "source", "type", "project", "data"];
        if self.direction == Direction::Outbound {
            extensions.insert(
                "causationid".into(),
                json!({"type": "string", "minLength": 1}),
            );
            required.push("causationid");
            extensions.insert(
                "sequence".into(),
                json!({
                    "type": "string",
                    "pattern": "^[0-9]{20}$",
                    "description": "CloudEvents sequence extension: grows with every decision \
                        about the conversation (the agent, for agent.status_changed); 20 digits, \
                        so that it orders as text too. A consumer keeps the event with the \
                        highest sequence per conversation (per agent) and may drop lower ones."
                }),
            );
            if self.event_type != "command.rejected" {
                required.push("sequence");
            }
        }
        let mut properties = json!({
            "specversion": {"const": "1.0"},
            "id": {"type": "string", "minLength": 1, "maxLength": 256},
            "source": if self.direction == Direction::Inbound {
                json!({"type": "string", "minLength": 1})
            } else {
                json!({"const": "switchboard"})
            },
            "type": {"const": self.event_type},
            "time": if self.direction == Direction::Outbound {
                json!({"type": "string", "format": "date-time"})
            } else {
                json!({
                    "type": "string",
                    "format": "date-time",
                    "description": "RFC 3339, millisecond precision or finer, one clock per \
                        thing: events about one agent, setting or conversation take effect in \
                        this order; an older one arriving late changes nothing."
                })
            },
            "datacontenttype": {"type": "string", "pattern": "^application/json"},
            "data": data,
        });
        for (key, value) in extensions {
            properties[key] = value;
        }
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": format!("https://switchboard.dev/schemas/{}", self.file_name()),
            "title": self.event_type,
            "description": self.summary,
            "type": "object",
            "required": required,
            "properties": properties,
        })
    }
}
