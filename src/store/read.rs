//! Reading a project's state as the library keeps it: what `switchboard inspect`, `simulate`
//! and the tests look at. Each read is one or a few commands, not an atomic snapshot of the
//! project; the key names and record formats stay inside the store.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use serde_json::{Map, Value};

use super::interface::OWNED_BY_AGENT_FIELD;
use super::keys::{agent_load_key, event_digest, events_key, project_key};
use super::{Store, StoreError};
use crate::contract::Id;

/// A conversation as its record tells it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ConversationState {
    /// `waiting`, `open`, `offered` (broadcast), `pending` (custom) or `closed`.
    #[serde(rename = "s")]
    pub state: String,
    /// The agent holding it while open (and the last one after a close).
    #[serde(rename = "a", default)]
    pub agent: Option<String>,
    /// Absent for a tombstone (closed before it was seen created).
    #[serde(rename = "v", default)]
    pub visitor: Option<String>,
    #[serde(rename = "p", default)]
    pub priority: i64,
    /// The last sequence number published about it.
    #[serde(rename = "q", default)]
    pub sequence: u64,
    /// The channel it came from, if the platform said.
    #[serde(rename = "ch", default)]
    pub channel: Option<String>,
}

/// One waiting conversation, in the order they are served.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub conversation_id: String,
    pub priority: i64,
}

impl Store {
    /// The project's settings as stored (only those set; the defaults are
    /// `domain::settings::defaults()`).
    pub async fn settings(&self, project: &Id) -> Result<Map<String, Value>, StoreError> {
        let stored: Option<String> = self
            .query(redis::cmd("GET").arg(project_key(project, "settings")))
            .await?;
        Ok(stored
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default())
    }

    /// Every agent's configuration, by agent id.
    pub async fn agents(&self, project: &Id) -> Result<BTreeMap<String, Value>, StoreError> {
        let stored: HashMap<String, String> = self
            .query(redis::cmd("HGETALL").arg(project_key(project, "agents")))
            .await?;
        Ok(stored
            .into_iter()
            .map(|(id, text)| (id, serde_json::from_str(&text).unwrap_or_default()))
            .collect())
    }

    /// Every agent's status that is not the default (`offline`), by agent id.
    pub async fn statuses(&self, project: &Id) -> Result<BTreeMap<String, String>, StoreError> {
        self.query(redis::cmd("HGETALL").arg(project_key(project, "status")))
            .await
    }

    /// One agent's status (`offline` unless set).
    pub async fn status(&self, project: &Id, agent: &str) -> Result<String, StoreError> {
        let status: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(project_key(project, "status"))
                    .arg(agent),
            )
            .await?;
        Ok(status.unwrap_or_else(|| "offline".into()))
    }

    /// Whether the project keeps each agent's load in a key of its own (store layout 2, see
    /// load.lua), rather than all of them in `owned`.
    async fn owned_by_agent(&self, project: &Id) -> Result<bool, StoreError> {
        let marked: Option<String> = self
            .query(
                redis::cmd("HGET")
                    .arg(project_key(project, "meta"))
                    .arg(OWNED_BY_AGENT_FIELD),
            )
            .await?;
        Ok(marked.as_deref() == Some("1"))
    }

    /// The conversations that count in each agent's load, by agent id (agents holding none are
    /// absent): its open ones but the inactive, and closed ones still in their wrap-up.
    pub async fn open_conversations(
        &self,
        project: &Id,
    ) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
        let mut open: BTreeMap<String, Vec<String>> = BTreeMap::new();
        if self.owned_by_agent(project).await? {
            let agents: Vec<String> = self
                .query(redis::cmd("HKEYS").arg(project_key(project, "agents")))
                .await?;
            for agent in agents {
                let held: Vec<String> = self
                    .query(
                        redis::cmd("ZRANGE")
                            .arg(agent_load_key(project, &agent))
                            .arg(0)
                            .arg(-1),
                    )
                    .await?;
                if !held.is_empty() {
                    open.insert(agent, held);
                }
            }
            return Ok(open);
        }
        let members: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(project_key(project, "owned"))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        for member in members {
            if let Some((agent, conversation)) = member.split_once('|') {
                open.entry(agent.into())
                    .or_default()
                    .push(conversation.into());
            }
        }
        Ok(open)
    }

    /// How many conversations are open (assigned to an agent), all agents together.
    pub async fn open_count(&self, project: &Id) -> Result<u64, StoreError> {
        if self.owned_by_agent(project).await? {
            let open = self.open_conversations(project).await?;
            return Ok(open.values().map(|held| held.len() as u64).sum());
        }
        self.query(redis::cmd("ZCARD").arg(project_key(project, "owned")))
            .await
    }

    /// How many conversations count in one agent's load (see `open_conversations`).
    pub async fn load(&self, project: &Id, agent: &str) -> Result<u64, StoreError> {
        if self.owned_by_agent(project).await? {
            return self
                .query(redis::cmd("ZCARD").arg(agent_load_key(project, agent)))
                .await;
        }
        self.query(
            redis::cmd("ZLEXCOUNT")
                .arg(project_key(project, "owned"))
                .arg(format!("[{agent}|"))
                .arg(format!("[{agent}|\u{ff}")),
        )
        .await
    }

    /// How many open conversations of one channel count against the agent's `capacity` for it
    /// (0 when it has none for that channel: then only `max_concurrent` bounds them).
    pub async fn channel_load(
        &self,
        project: &Id,
        agent: &str,
        channel: &str,
    ) -> Result<u64, StoreError> {
        self.query(
            redis::cmd("ZLEXCOUNT")
                .arg(project_key(project, "channel_owned"))
                .arg(format!("[{agent}|{channel}|"))
                .arg(format!("[{agent}|{channel}|\u{ff}")),
        )
        .await
    }

    /// The open conversations that stopped counting in their agent's load
    /// (`inactive_after_seconds`), as (agent, conversation) pairs.
    pub async fn inactive_conversations(
        &self,
        project: &Id,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let members: Vec<String> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(project_key(project, "inactive"))
                    .arg(0)
                    .arg(-1),
            )
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|m| {
                m.split_once('|')
                    .map(|(agent, conversation)| (agent.into(), conversation.into()))
            })
            .collect())
    }

    /// The agents that may take a conversation now (the base pool), fewest open first.
    pub async fn eligible(&self, project: &Id) -> Result<Vec<String>, StoreError> {
        self.query(
            redis::cmd("ZRANGE")
                .arg(project_key(project, "by_load"))
                .arg(0)
                .arg(-1),
        )
        .await
    }

    /// One conversation's record, if the project remembers it.
    pub async fn conversation(
        &self,
        project: &Id,
        conversation: &str,
    ) -> Result<Option<ConversationState>, StoreError> {
        let stored: Option<Vec<u8>> = self
            .query(
                redis::cmd("HGET")
                    .arg(project_key(project, "convs"))
                    .arg(conversation),
            )
            .await?;
        stored.map(|stored| record(&stored)).transpose()
    }

    /// The records of these conversations, in the order given (`None` for one the project
    /// does not remember).
    pub async fn conversations_of(
        &self,
        project: &Id,
        conversations: &[&str],
    ) -> Result<Vec<Option<ConversationState>>, StoreError> {
        if conversations.is_empty() {
            return Ok(vec![]);
        }
        let stored: Vec<Option<Vec<u8>>> = self
            .query(
                redis::cmd("HMGET")
                    .arg(project_key(project, "convs"))
                    .arg(conversations),
            )
            .await?;
        stored
            .into_iter()
            .map(|stored| stored.map(|stored| record(&stored)).transpose())
            .collect()
    }

    /// Every conversation the project remembers, by id.
    pub async fn conversations(
        &self,
        project: &Id,
    ) -> Result<BTreeMap<String, ConversationState>, StoreError> {
        let stored: HashMap<String, Vec<u8>> = self
            .query(redis::cmd("HGETALL").arg(project_key(project, "convs")))
            .await?;
        stored
            .into_iter()
            .map(|(id, stored)| Ok((id, record(&stored)?)))
            .collect()
    }

    /// The first `limit` waiting conversations (every one when `None`), in the order they are
    /// served: priority, then arrival.
    pub async fn waiting(
        &self,
        project: &Id,
        limit: Option<usize>,
    ) -> Result<Vec<Waiting>, StoreError> {
        let last = limit.map_or(-1, |n| n as isize - 1);
        let members: Vec<(String, f64)> = self
            .query(
                redis::cmd("ZRANGE")
                    .arg(project_key(project, "waiting"))
                    .arg(0)
                    .arg(last)
                    .arg("WITHSCORES"),
            )
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|(member, score)| {
                let (_, conversation) = member.split_once('|')?;
                Some(Waiting {
                    conversation_id: conversation.into(),
                    priority: -score as i64,
                })
            })
            .collect())
    }

    /// How many conversations wait, the whole queue (where [`Store::waiting`] may show only
    /// its head).
    pub async fn waiting_count(&self, project: &Id) -> Result<u64, StoreError> {
        self.query(redis::cmd("ZCARD").arg(project_key(project, "waiting")))
            .await
    }

    /// How many conversations are offered to agents (broadcast) or await an external decision
    /// (custom): held out of the waiting queue.
    pub async fn held_count(&self, project: &Id) -> Result<u64, StoreError> {
        self.query(redis::cmd("ZCARD").arg(project_key(project, "held")))
            .await
    }

    /// Whether the store still keeps an event's outputs for a replay (`Some(true)`: the broker
    /// has not confirmed them yet, as far as the store knows), remembers the event as seen
    /// (`Some(false)`), or does not know it (`None`). `now_ms` picks the window.
    pub async fn replayable(
        &self,
        project: &Id,
        event_id: &str,
        now_ms: i64,
    ) -> Result<Option<bool>, StoreError> {
        let digest = event_digest(event_id);
        let (generation, _) = self.generation(now_ms);
        for generation in [generation, generation.saturating_sub(1)] {
            let record: Option<String> = self
                .query(
                    redis::cmd("HGET")
                        .arg(events_key(project, generation))
                        .arg(&digest),
                )
                .await?;
            if let Some(record) = record {
                return Ok(Some(!record.is_empty()));
            }
        }
        Ok(None)
    }
}

/// A conversation's record as the library writes it: JSON, or MessagePack (store layout 2); a
/// JSON record is an object, so it starts with `{`, which no MessagePack map does.
fn record(stored: &[u8]) -> Result<ConversationState, StoreError> {
    let decoded = if stored.first() == Some(&b'{') {
        serde_json::from_slice(stored).map_err(|e| e.to_string())
    } else {
        rmp_serde::from_slice(stored).map_err(|e| e.to_string())
    };
    decoded.map_err(|e| StoreError::Reply(format!("{e}: {}", String::from_utf8_lossy(stored))))
}
