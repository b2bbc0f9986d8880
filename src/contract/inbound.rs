//! Inbound events: the envelope plus `data` checked against the contract and typed.
//!
//! Each event's data is a type of its own, which also gives the published JSON Schema (see
//! `schema`). Unknown fields inside conversation data are ignored (platforms attach their own);
//! unknown fields in settings and agent patches are rejected, because there a typo silently
//! changes nothing and a team lead would never find out why.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::agents::{AgentStatus, AgentsUpserted, Schedule};
use super::envelope::Envelope;
use super::parse::typed;
use super::settings::SettingsPatch;
use super::{quote, Id, Rejection};

/// Bounds of a conversation's `priority`.
pub const MAX_PRIORITY: i64 = 1_000_000;
/// Most entries in a conversation's `attributes`.
pub const MAX_ATTRIBUTES: usize = 32;
/// Longest text field (language, category) and attribute name.
pub const MAX_TEXT: usize = 128;

/// A valid inbound event.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundEvent {
    pub id: String,
    pub source: String,
    pub project: Id,
    /// The envelope's `time` in microseconds since the epoch. Events about one thing take
    /// effect in this order: a later one wins, an older one is stale (see the store).
    pub time_us: Option<i64>,
    pub kind: EventKind,
}

/// What happened, with its checked data.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventKind {
    ProjectConfigured(SettingsPatch),
    AgentUpserted(AgentsUpserted),
    AgentRemoved(AgentRef),
    AgentStatusChanged(StatusChanged),
    ConversationCreated(Conversation),
    MessageReceived(Conversation),
    AgentReplied(ConversationAgent),
    ConversationClosed(ConversationRef),
    AgentClaimRequested(ClaimRequested),
    ConversationTransferRequested(TransferRequested),
    AllocationDecided(ConversationAgent),
    ConversationRequeueRequested(RequeueRequested),
    /// Internal: a timer armed by an earlier decision is due (see `broker::delay`).
    TimerFired(TimerFired),
}

/// `agent.removed`: the agent leaves; its open conversations are reassigned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentRef {
    pub agent_id: Id,
}

/// `agent.status_changed`: the agent's own status in this project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusChanged {
    pub agent_id: Id,
    pub status: AgentStatus,
}

/// A conversation and one agent: `agent.replied`, `allocation.decided`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConversationAgent {
    pub conversation_id: Id,
    pub agent_id: Id,
}

/// `conversation.closed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConversationRef {
    pub conversation_id: Id,
}

/// `agent.claim_requested`: that conversation, or the next waiting one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClaimRequested {
    pub agent_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Id>,
}

/// `conversation.transfer_requested`: hand a conversation to another agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TransferRequested {
    pub conversation_id: Id,
    pub to_agent_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_agent_id: Option<Id>,
}

/// `conversation.requeue_requested`: the agent hands the conversation back to the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RequeueRequested {
    pub conversation_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_agent_id: Option<Id>,
}

/// The timers the store may arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Timer {
    ReplyTimeout,
    CustomTimeout,
    RuleStep,
    Schedule,
    NewDay,
    /// A waiting conversation's position is looked at again.
    QueuePosition,
    /// A waiting conversation may overflow.
    MaxWait,
    /// An open conversation may have gone quiet (`inactive_after_seconds`).
    Inactivity,
    /// A closed conversation's wrap-up is over (`wrap_up_seconds`).
    WrapUp,
}

/// Internal: a due timer (arrives through the work queue, never from platforms). Conversation
/// timers name the conversation; `schedule` timers name the agent and carry its schedule. Its
/// `token` must match the conversation's (agent's) current state, so a stale or forged timer
/// changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimerFired {
    pub timer: Timer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
    pub token: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
}

impl TimerFired {
    /// Each timer names what it is about.
    fn check(&self) -> Result<(), Rejection> {
        match self.timer {
            Timer::NewDay => Ok(()),
            Timer::Schedule => {
                let schedule = self
                    .schedule
                    .as_ref()
                    .ok_or_else(|| Rejection::MissingField("schedule".into()))?;
                self.agent_id
                    .as_ref()
                    .ok_or_else(|| Rejection::MissingField("agent_id".into()))?;
                schedule.check("schedule")
            }
            _ => self
                .conversation_id
                .as_ref()
                .map(|_| ())
                .ok_or_else(|| Rejection::MissingField("conversation_id".into())),
        }
    }
}

/// The conversation data of `conversation.created` and `message.received`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Conversation {
    pub conversation_id: Id,
    pub visitor_id: Id,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_account: Option<Id>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub category: Option<String>,
    /// Higher waits less.
    #[serde(default, deserialize_with = "null_as_zero")]
    #[schemars(schema_with = "priority_schema")]
    pub priority: i64,
    /// A flat object of strings, numbers and booleans.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
}

impl Conversation {
    fn check(&self) -> Result<(), Rejection> {
        if self.priority.abs() > MAX_PRIORITY {
            return Err(Rejection::invalid(
                "priority",
                format!("must be an integer from -{MAX_PRIORITY} to {MAX_PRIORITY}"),
            ));
        }
        for (field, text) in [("language", &self.language), ("category", &self.category)] {
            if text
                .as_ref()
                .is_some_and(|t| t.is_empty() || t.chars().count() > MAX_TEXT)
            {
                return Err(Rejection::invalid(
                    field,
                    "must be a string of 1-128 characters",
                ));
            }
        }
        Ok(())
    }
}

/// `priority` may also be `null` (0).
fn priority_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": ["integer", "null"],
        "minimum": -MAX_PRIORITY,
        "maximum": MAX_PRIORITY,
        "default": 0,
        "description": "Higher waits less."
    })
}

fn null_as_zero<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    Ok(Option::<i64>::deserialize(deserializer)?.unwrap_or(0))
}

/// A conversation's `attributes`: a flat object of strings, numbers and booleans (rules test
/// them), at most [`MAX_ATTRIBUTES`] of them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Attributes(pub Map<String, Value>);

impl Attributes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Attributes, D::Error> {
        use serde::de::Error;
        let map = match Value::deserialize(deserializer)? {
            Value::Null => return Ok(Attributes::default()),
            Value::Object(map) => map,
            _ => return Err(D::Error::custom("must be an object")),
        };
        if map.len() > MAX_ATTRIBUTES {
            return Err(D::Error::custom(format!(
                "at most {MAX_ATTRIBUTES} entries"
            )));
        }
        for (key, value) in &map {
            let flat = matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_));
            if !flat || key.is_empty() || key.len() > MAX_TEXT {
                return Err(D::Error::custom(
                    "must be a flat object of strings, numbers and booleans",
                ));
            }
        }
        Ok(Attributes(map))
    }
}

impl JsonSchema for Attributes {
    fn schema_name() -> Cow<'static, str> {
        "Attributes".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["object", "null"],
            "maxProperties": 32,
            "additionalProperties": {"type": ["string", "number", "boolean"]},
            "description": "A flat object of strings, numbers and booleans."
        })
    }
}

/// Every inbound `type` the contract defines.
pub const INBOUND_TYPES: &[&str] = &[
    "project.configured",
    "agent.upserted",
    "agent.removed",
    "agent.status_changed",
    "conversation.created",
    "message.received",
    "agent.replied",
    "conversation.closed",
    "agent.claim_requested",
    "conversation.transfer_requested",
    "allocation.decided",
    "conversation.requeue_requested",
    TIMER_FIRED,
];

/// The internal event a due timer comes back as. Its id is the timer's, so a timer that fires
/// twice (redelivered) has one effect.
pub const TIMER_FIRED: &str = "timer.fired";

impl EventKind {
    /// The CloudEvents `type` of this event.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::ProjectConfigured(_) => "project.configured",
            EventKind::AgentUpserted(_) => "agent.upserted",
            EventKind::AgentRemoved(_) => "agent.removed",
            EventKind::AgentStatusChanged(_) => "agent.status_changed",
            EventKind::ConversationCreated(_) => "conversation.created",
            EventKind::MessageReceived(_) => "message.received",
            EventKind::AgentReplied(_) => "agent.replied",
            EventKind::ConversationClosed(_) => "conversation.closed",
            EventKind::AgentClaimRequested(_) => "agent.claim_requested",
            EventKind::ConversationTransferRequested(_) => "conversation.transfer_requested",
            EventKind::AllocationDecided(_) => "allocation.decided",
            EventKind::ConversationRequeueRequested(_) => "conversation.requeue_requested",
            EventKind::TimerFired(_) => TIMER_FIRED,
        }
    }

    /// The conversation this event is about, if any (for log lines).
    pub fn conversation_id(&self) -> Option<&Id> {
        match self {
            EventKind::ConversationCreated(c) | EventKind::MessageReceived(c) => {
                Some(&c.conversation_id)
            }
            EventKind::AgentReplied(d) | EventKind::AllocationDecided(d) => {
                Some(&d.conversation_id)
            }
            EventKind::ConversationClosed(d) => Some(&d.conversation_id),
            EventKind::ConversationTransferRequested(d) => Some(&d.conversation_id),
            EventKind::ConversationRequeueRequested(d) => Some(&d.conversation_id),
            EventKind::TimerFired(d) => d.conversation_id.as_ref(),
            EventKind::AgentClaimRequested(d) => d.conversation_id.as_ref(),
            _ => None,
        }
    }
}

/// Data whose fields may be anything a platform adds: unknown ones are ignored.
fn data<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, Rejection> {
    typed(value, |_| "a known field")
}

/// Decodes and checks one inbound event body.
pub fn decode(body: &[u8]) -> Result<InboundEvent, Rejection> {
    let envelope = Envelope::parse(body)?;
    let value = &envelope.data;
    let kind = match envelope.event_type.as_str() {
        "project.configured" => {
            let Value::Object(patch) = value else {
                unreachable!("Envelope::parse only accepts object data")
            };
            EventKind::ProjectConfigured(SettingsPatch::parse(patch)?)
        }
        "agent.upserted" => EventKind::AgentUpserted(AgentsUpserted::parse(value)?),
        "agent.removed" => EventKind::AgentRemoved(data(value)?),
        "agent.status_changed" => EventKind::AgentStatusChanged(data(value)?),
        "conversation.created" => EventKind::ConversationCreated(conversation(value)?),
        "message.received" => EventKind::MessageReceived(conversation(value)?),
        "agent.replied" => EventKind::AgentReplied(data(value)?),
        "conversation.closed" => EventKind::ConversationClosed(data(value)?),
        "agent.claim_requested" => EventKind::AgentClaimRequested(data(value)?),
        "conversation.transfer_requested" => EventKind::ConversationTransferRequested(data(value)?),
        "allocation.decided" => EventKind::AllocationDecided(data(value)?),
        "conversation.requeue_requested" => EventKind::ConversationRequeueRequested(data(value)?),
        TIMER_FIRED => {
            let timer: TimerFired = data(value)?;
            timer.check()?;
            EventKind::TimerFired(timer)
        }
        other => return Err(Rejection::UnknownType(quote(other))),
    };
    Ok(InboundEvent {
        id: envelope.id,
        source: envelope.source,
        project: envelope.project,
        time_us: envelope.time_us,
        kind,
    })
}

fn conversation(value: &Value) -> Result<Conversation, Rejection> {
    let conversation: Conversation = data(value)?;
    conversation.check()?;
    Ok(conversation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(event_type: &str, data: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "specversion": "1.0", "id": "e1", "source": "/p", "type": event_type,
            "project": "acme", "data": data
        }))
        .unwrap()
    }

    fn reason(event_type: &str, data: Value) -> String {
        decode(&body(event_type, data)).unwrap_err().to_string()
    }

    #[test]
    fn decodes_every_contract_type() {
        let samples = [
            ("project.configured", json!({"mode": "auto"})),
            (
                "agent.upserted",
                json!({"agents": [{"agent_id": "a1", "max_concurrent": 2}]}),
            ),
            ("agent.removed", json!({"agent_id": "a1"})),
            (
                "agent.status_changed",
                json!({"agent_id": "a1", "status": "online"}),
            ),
            (
                "conversation.created",
                json!({"conversation_id": "c1", "visitor_id": "v1"}),
            ),
            (
                "message.received",
                json!({"conversation_id": "c1", "visitor_id": "v1"}),
            ),
            (
                "agent.replied",
                json!({"conversation_id": "c1", "agent_id": "a1"}),
            ),
            ("conversation.closed", json!({"conversation_id": "c1"})),
            ("agent.claim_requested", json!({"agent_id": "a1"})),
            (
                "conversation.transfer_requested",
                json!({"conversation_id": "c1", "to_agent_id": "a2"}),
            ),
            (
                "allocation.decided",
                json!({"conversation_id": "c1", "agent_id": "a1"}),
            ),
            (
                "conversation.requeue_requested",
                json!({"conversation_id": "c1", "by_agent_id": "a1"}),
            ),
            (
                "timer.fired",
                json!({"timer": "reply_timeout", "conversation_id": "c1", "token": 2}),
            ),
        ];
        assert_eq!(samples.len(), INBOUND_TYPES.len());
        for (event_type, data) in samples {
            let event = decode(&body(event_type, data)).unwrap();
            assert_eq!(event.kind.type_name(), event_type);
        }
    }

    #[test]
    fn conversation_fields_are_checked_and_typed() {
        let event = decode(&body(
            "conversation.created",
            json!({"conversation_id": "c1", "visitor_id": "v1", "channel": "whatsapp",
                   "language": "es", "priority": 5, "attributes": {"vip": true},
                   "platform_extra": {"ignored": 1}}),
        ))
        .unwrap();
        let EventKind::ConversationCreated(c) = event.kind else {
            panic!()
        };
        assert_eq!(c.priority, 5);
        assert_eq!(c.channel.as_ref().unwrap().as_str(), "whatsapp");
        assert_eq!(c.attributes.0["vip"], json!(true));
        // The store gets the data as sent, less what it does not know.
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({"conversation_id": "c1", "visitor_id": "v1", "channel": "whatsapp",
                   "language": "es", "priority": 5, "attributes": {"vip": true}})
        );
    }

    #[test]
    fn rejections_name_the_field() {
        assert!(reason("conversation.created", json!({"visitor_id": "v"}))
            .contains("missing required field `conversation_id`"));
        assert!(reason(
            "conversation.created",
            json!({"conversation_id": "c 1", "visitor_id": "v"})
        )
        .contains("invalid field `conversation_id`"));
        assert!(reason(
            "conversation.created",
            json!({"conversation_id": "c", "visitor_id": "v", "priority": "high"})
        )
        .contains("`priority`"));
        assert!(reason(
            "conversation.created",
            json!({"conversation_id": "c", "visitor_id": "v", "attributes": {"a": {"b": 1}}})
        )
        .contains("flat object"));
        assert!(reason(
            "agent.status_changed",
            json!({"agent_id": "a", "status": "away"})
        )
        .contains("`status`"));
        assert!(reason("agent.upserted", json!({"agents": []})).contains("1 to 1000"));
        assert!(
            reason("agent.teleported", json!({})).contains("unknown event type `agent.teleported`")
        );
        assert!(
            reason("conversation.closed", json!({"conversation_id": 12}))
                .contains("must be a string")
        );
    }
}
