//! Inbound events: the envelope plus `data` checked against the contract and typed.
//!
//! Unknown fields inside conversation data are ignored (platforms attach their own); unknown
//! fields in settings and agent patches are rejected, because there a typo silently changes
//! nothing and a team lead would never find out why.

use serde::Serialize;
use serde_json::{Map, Value};

use super::envelope::Envelope;
use super::{quote, Id, Rejection};
use crate::domain::agent::{AgentPatch, AgentStatus};
use crate::domain::settings::SettingsPatch;

/// Most agents one `agent.upserted` may carry.
pub const MAX_AGENTS_PER_UPSERT: usize = 1000;
/// Bounds of a conversation's `priority`.
pub const MAX_PRIORITY: i64 = 1_000_000;
/// Most entries in a conversation's `attributes`.
pub const MAX_ATTRIBUTES: usize = 32;

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
    AgentUpserted {
        agents: Vec<AgentPatch>,
    },
    AgentRemoved {
        agent_id: Id,
    },
    AgentStatusChanged {
        agent_id: Id,
        status: AgentStatus,
    },
    ConversationCreated(Conversation),
    MessageReceived(Conversation),
    AgentReplied {
        conversation_id: Id,
        agent_id: Id,
    },
    ConversationClosed {
        conversation_id: Id,
    },
    AgentClaimRequested {
        agent_id: Id,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<Id>,
    },
    ConversationTransferRequested {
        conversation_id: Id,
        to_agent_id: Id,
        #[serde(skip_serializing_if = "Option::is_none")]
        by_agent_id: Option<Id>,
    },
    AllocationDecided {
        conversation_id: Id,
        agent_id: Id,
    },
    /// Internal: a timer armed by an earlier decision is due (see `broker::delay`).
    TimerFired {
        timer: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        conversation_id: Option<Id>,
        #[serde(skip_serializing_if = "Option::is_none")]
        agent_id: Option<Id>,
        token: u64,
        /// The agent's schedule, for `schedule` timers.
        #[serde(skip_serializing_if = "Option::is_none")]
        schedule: Option<Value>,
    },
}

/// The conversation data of `conversation.created` and `message.received`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    pub conversation_id: Id,
    pub visitor_id: Id,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_account: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    pub priority: i64,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
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
    TIMER_FIRED,
];

/// The internal event a due timer comes back as. Its id is the timer's, so a timer that fires
/// twice (redelivered) has one effect; its `token` must match the conversation's current
/// assignment, so a stale or forged timer changes nothing.
pub const TIMER_FIRED: &str = "timer.fired";

/// Timers the store may arm.
pub const TIMERS: &[&str] = &[
    "reply_timeout",
    "custom_timeout",
    "rule_step",
    "schedule",
    "new_day",
];

impl EventKind {
    /// The CloudEvents `type` of this event.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::ProjectConfigured(_) => "project.configured",
            EventKind::AgentUpserted { .. } => "agent.upserted",
            EventKind::AgentRemoved { .. } => "agent.removed",
            EventKind::AgentStatusChanged { .. } => "agent.status_changed",
            EventKind::ConversationCreated(_) => "conversation.created",
            EventKind::MessageReceived(_) => "message.received",
            EventKind::AgentReplied { .. } => "agent.replied",
            EventKind::ConversationClosed { .. } => "conversation.closed",
            EventKind::AgentClaimRequested { .. } => "agent.claim_requested",
            EventKind::ConversationTransferRequested { .. } => "conversation.transfer_requested",
            EventKind::AllocationDecided { .. } => "allocation.decided",
            EventKind::TimerFired { .. } => TIMER_FIRED,
        }
    }

    /// The conversation this event is about, if any (for log lines).
    pub fn conversation_id(&self) -> Option<&Id> {
        match self {
            EventKind::ConversationCreated(c) | EventKind::MessageReceived(c) => {
                Some(&c.conversation_id)
            }
            EventKind::AgentReplied {
                conversation_id, ..
            }
            | EventKind::ConversationClosed { conversation_id }
            | EventKind::ConversationTransferRequested {
                conversation_id, ..
            }
            | EventKind::AllocationDecided {
                conversation_id, ..
            } => Some(conversation_id),
            EventKind::TimerFired {
                conversation_id, ..
            } => conversation_id.as_ref(),
            EventKind::AgentClaimRequested {
                conversation_id, ..
            } => conversation_id.as_ref(),
            _ => None,
        }
    }
}

/// Decodes and checks one inbound event body.
pub fn decode(body: &[u8]) -> Result<InboundEvent, Rejection> {
    let envelope = Envelope::parse(body)?;
    let Value::Object(data) = envelope.data else {
        unreachable!("Envelope::parse only accepts object data")
    };
    let data = Fields(&data);
    let kind = match envelope.event_type.as_str() {
        "project.configured" => EventKind::ProjectConfigured(SettingsPatch::parse(data.0)?),
        "agent.upserted" => EventKind::AgentUpserted {
            agents: parse_agents(&data)?,
        },
        "agent.removed" => EventKind::AgentRemoved {
            agent_id: data.id("agent_id")?,
        },
        "agent.status_changed" => EventKind::AgentStatusChanged {
            agent_id: data.id("agent_id")?,
            status: AgentStatus::parse(data.required("status")?)?,
        },
        "conversation.created" => EventKind::ConversationCreated(parse_conversation(&data)?),
        "message.received" => EventKind::MessageReceived(parse_conversation(&data)?),
        "agent.replied" => EventKind::AgentReplied {
            conversation_id: data.id("conversation_id")?,
            agent_id: data.id("agent_id")?,
        },
        "conversation.closed" => EventKind::ConversationClosed {
            conversation_id: data.id("conversation_id")?,
        },
        "agent.claim_requested" => EventKind::AgentClaimRequested {
            agent_id: data.id("agent_id")?,
            conversation_id: data.optional_id("conversation_id")?,
        },
        "conversation.transfer_requested" => EventKind::ConversationTransferRequested {
            conversation_id: data.id("conversation_id")?,
            to_agent_id: data.id("to_agent_id")?,
            by_agent_id: data.optional_id("by_agent_id")?,
        },
        "allocation.decided" => EventKind::AllocationDecided {
            conversation_id: data.id("conversation_id")?,
            agent_id: data.id("agent_id")?,
        },
        TIMER_FIRED => {
            let timer = match data.required("timer")?.as_str() {
                Some(timer) if TIMERS.contains(&timer) => timer.to_string(),
                _ => return Err(Rejection::invalid("timer", "is not a known timer")),
            };
            let token = data
                .required("token")?
                .as_u64()
                .ok_or_else(|| Rejection::invalid("token", "must be a whole number"))?;
            if timer == "new_day" {
                EventKind::TimerFired {
                    timer,
                    conversation_id: None,
                    agent_id: None,
                    token,
                    schedule: None,
                }
            } else if timer == "schedule" {
                EventKind::TimerFired {
                    timer,
                    conversation_id: None,
                    agent_id: Some(data.id("agent_id")?),
                    token,
                    schedule: Some(data.required("schedule")?.clone()),
                }
            } else {
                EventKind::TimerFired {
                    timer,
                    conversation_id: Some(data.id("conversation_id")?),
                    agent_id: None,
                    token,
                    schedule: None,
                }
            }
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

fn parse_agents(data: &Fields) -> Result<Vec<AgentPatch>, Rejection> {
    let Value::Array(entries) = data.required("agents")? else {
        return Err(Rejection::invalid("agents", "must be an array"));
    };
    if entries.is_empty() || entries.len() > MAX_AGENTS_PER_UPSERT {
        return Err(Rejection::invalid(
            "agents",
            format!("must hold 1 to {MAX_AGENTS_PER_UPSERT} entries"),
        ));
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| AgentPatch::parse(entry, &format!("agents[{i}]")))
        .collect()
}

fn parse_conversation(data: &Fields) -> Result<Conversation, Rejection> {
    let priority = match data.0.get("priority") {
        None | Some(Value::Null) => 0,
        Some(value) => value
            .as_i64()
            .filter(|p| p.abs() <= MAX_PRIORITY)
            .ok_or_else(|| {
                Rejection::invalid(
                    "priority",
                    format!("must be an integer from -{MAX_PRIORITY} to {MAX_PRIORITY}"),
                )
            })?,
    };
    let attributes = match data.0.get("attributes") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => {
            if map.len() > MAX_ATTRIBUTES {
                return Err(Rejection::invalid(
                    "attributes",
                    format!("at most {MAX_ATTRIBUTES} entries"),
                ));
            }
            for (key, value) in map {
                let flat = matches!(value, Value::String(_) | Value::Number(_) | Value::Bool(_));
                if !flat || key.is_empty() || key.len() > 128 {
                    return Err(Rejection::invalid(
                        "attributes",
                        "must be a flat object of strings, numbers and booleans",
                    ));
                }
            }
            map.clone()
        }
        Some(_) => return Err(Rejection::invalid("attributes", "must be an object")),
    };
    Ok(Conversation {
        conversation_id: data.id("conversation_id")?,
        visitor_id: data.id("visitor_id")?,
        channel: data.optional_id("channel")?,
        channel_account: data.optional_id("channel_account")?,
        language: data.optional_text("language")?,
        category: data.optional_text("category")?,
        priority,
        attributes,
    })
}

/// Field access with contract-worded errors.
pub(crate) struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    pub fn required(&self, field: &str) -> Result<&Value, Rejection> {
        match self.0.get(field) {
            None | Some(Value::Null) => Err(Rejection::MissingField(field.into())),
            Some(value) => Ok(value),
        }
    }

    pub fn id(&self, field: &str) -> Result<Id, Rejection> {
        parse_id(self.required(field)?, field)
    }

    pub fn optional_id(&self, field: &str) -> Result<Option<Id>, Rejection> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => parse_id(value, field).map(Some),
        }
    }

    pub fn optional_text(&self, field: &str) -> Result<Option<String>, Rejection> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 128 => {
                Ok(Some(s.clone()))
            }
            Some(_) => Err(Rejection::invalid(
                field,
                "must be a string of 1-128 characters",
            )),
        }
    }
}

/// Parses an identifier field, naming the field in the error.
pub(crate) fn parse_id(value: &Value, field: &str) -> Result<Id, Rejection> {
    let Value::String(s) = value else {
        return Err(Rejection::invalid(field, "must be a string"));
    };
    Id::parse(s).map_err(|e| Rejection::invalid(field, format!("{} {e}", quote(s))))
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
        assert_eq!(c.channel.unwrap().as_str(), "whatsapp");
        assert_eq!(c.attributes["vip"], json!(true));
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
