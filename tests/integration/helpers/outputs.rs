//! What workers publish, as the platform receives it: read from the test's tap on its outbound
//! exchange, each checked against its schema, and picked apart by type.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use switchboard::contract::OutboundEvent;

use super::env::Env;
use super::events::Platform;
use super::redis::{load_of, store};
use super::schemas::assert_valid_output;

impl Env {
    /// Publishes a team of agents with these capacities, then a burst of 60 creations, and
    /// checks what the workers running (however many, however configured) make of it: every
    /// conversation decided once, each agent filled exactly to its capacity, the rest queued.
    pub async fn burst_fills_the_team(&mut self, platform: &mut Platform, team: &[(&str, u64)]) {
        self.team(platform, team).await;
        let burst = platform.created_each(0..60);
        self.publish_many(&burst).await;
        let out = self.outputs(60, Duration::from_secs(15)).await;
        assert_eq!(out.len(), 60);
        assert_eq!(decided_count(&out), 60, "every conversation decided");
        assert!(
            decisions(&out).values().all(|ids| ids.len() == 1),
            "each conversation decided once"
        );
        let capacity: u64 = team.iter().map(|(_, max)| max).sum();
        assert_eq!(
            of_type(&out, "conversation.assigned").len() as u64,
            capacity
        );
        assert_eq!(
            of_type(&out, "conversation.queued").len() as u64,
            60 - capacity
        );
        let store = store().await;
        for (agent, max) in team {
            assert_eq!(load_of(&store, &platform.project, agent).await, *max as i64);
        }
    }

    /// The next `n` outbound events, in the order they arrived; fewer if `wait` runs out.
    pub async fn outputs(&mut self, n: usize, wait: Duration) -> Vec<Value> {
        let mut received = vec![];
        let deadline = tokio::time::Instant::now() + wait;
        while received.len() < n {
            match tokio::time::timeout_at(deadline, self.outputs.next()).await {
                Ok(Some(Ok(delivery))) => {
                    let output: Value = serde_json::from_slice(&delivery.data).unwrap();
                    if self.check_outputs {
                        assert_valid_output(&output);
                    }
                    received.push(output)
                }
                _ => break,
            }
        }
        received
    }

    /// Outputs until `done` says they are complete (or `wait` runs out), then whatever else
    /// arrives in a short grace period (late duplicates would show up there).
    pub async fn outputs_until(
        &mut self,
        done: impl Fn(&[Value]) -> bool,
        wait: Duration,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut received = vec![];
        while !done(&received) && tokio::time::Instant::now() < deadline {
            received.extend(self.outputs(usize::MAX, Duration::from_millis(200)).await);
        }
        received.extend(self.outputs_for(Duration::from_millis(500)).await);
        received
    }

    /// Whatever arrives within `wait`.
    pub async fn outputs_for(&mut self, wait: Duration) -> Vec<Value> {
        self.outputs(usize::MAX, wait).await
    }
}

/// For each conversation assigned or queued among the outputs, the ids of those decisions (a
/// replayed decision repeats its id: one id is one decision).
pub fn decisions(outputs: &[Value]) -> HashMap<String, HashSet<String>> {
    let mut decided: HashMap<String, HashSet<String>> = HashMap::new();
    for o in outputs {
        if o["type"] == "conversation.assigned" || o["type"] == "conversation.queued" {
            decided
                .entry(
                    o["data"]["conversation_id"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
                .or_default()
                .insert(o["id"].as_str().unwrap_or("").to_string());
        }
    }
    decided
}

/// Distinct conversations with an assignment or a queueing among the outputs.
pub fn decided_count(outputs: &[Value]) -> usize {
    decisions(outputs).len()
}

/// Outbound events of one type.
pub fn of_type<'a>(outputs: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    outputs.iter().filter(|o| o["type"] == event_type).collect()
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
