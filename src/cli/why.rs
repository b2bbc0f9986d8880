//! `switchboard inspect PROJECT --waiting` and `--conversation ID`: why conversations wait, as
//! the store's `explain` function tells it (agent by agent, with the rules the decisions use),
//! as text or JSON.

use std::fmt::Write;

use serde_json::Value;

use crate::clock::{Clock, SystemClock};
use crate::contract::Id;
use crate::store::explain::Question;
use crate::store::{Store, StoreError};

/// The reasons an agent cannot take a conversation, in the words the report uses.
const REASONS: &[(&str, &str)] = &[
    ("offline", "offline"),
    ("busy", "busy"),
    ("at_max_concurrent", "at max_concurrent"),
    ("at_channel_capacity", "at their capacity for the channel"),
    ("no_capacity", "max_concurrent 0"),
    ("at_daily_limit", "at daily_limit"),
    ("lacks_skills", "lacks the step's skills"),
    ("channel", "no right to the channel"),
    ("auto_assign_off", "auto_assign off"),
    ("outside_level", "outside the precedence level that serves"),
];

/// The explanation as the store gives it (JSON).
pub async fn explain(
    store: &Store,
    project: &Id,
    question: Question<'_>,
) -> Result<Value, StoreError> {
    store.explain(project, question, SystemClock.now_ms()).await
}

/// The waiting conversations and their queues, as text.
pub fn render_waiting(project: &Id, explained: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "project {project}: {} waiting\n", explained["waiting"]);
    let _ = writeln!(
        out,
        "  {:<8} {:<16} {:<28} {:>8} {:>8}",
        "POSITION", "QUEUE", "CONVERSATION", "WAITED", "PRIORITY"
    );
    for waiting in explained["listed"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<8} {:<16} {:<28} {:>8} {:>8}",
            text(&waiting["position"]),
            text(&waiting["queue"]),
            text(&waiting["conversation_id"]),
            seconds(&waiting["waited_seconds"]),
            text(&waiting["priority"]),
        );
    }
    for queue in explained["queues"].as_array().into_iter().flatten() {
        out.push('\n');
        render_queue(&mut out, queue);
    }
    out
}

/// One conversation, as text.
pub fn render_conversation(explained: &Value) -> String {
    let mut out = String::new();
    let id = text(&explained["conversation_id"]);
    if explained["known"] == false {
        let _ = writeln!(
            out,
            "conversation {id}: not known (never seen, or forgotten after its retention)"
        );
        return out;
    }
    let _ = writeln!(out, "conversation {id}: {}", text(&explained["state"]));
    if explained["rule"].is_number() {
        let _ = writeln!(
            out,
            "  rule {}, step {}: {}",
            explained["rule"], explained["step"], explained["step_requirement"]
        );
    } else {
        let _ = writeln!(out, "  no rule: any agent");
    }
    let _ = writeln!(
        out,
        "  priority {}, sequence {}",
        explained["priority"], explained["sequence"]
    );
    match explained["state"].as_str() {
        Some("waiting") => {
            let _ = writeln!(
                out,
                "  waits: position {} for {}",
                text(&explained["position"]),
                seconds(&explained["waited_seconds"])
            );
            let candidates: Vec<String> = explained["candidates"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let _ = writeln!(
                out,
                "  candidates now: {}",
                if candidates.is_empty() {
                    "none".into()
                } else {
                    candidates.join(", ")
                }
            );
            render_queue(&mut out, &explained["queue"]);
        }
        _ => {
            let _ = writeln!(out, "  decision: {}", text(&explained["decision"]));
            if explained["inactive"] == true {
                let _ = writeln!(
                    out,
                    "  inactive: no visitor message for inactive_after_seconds; it does not \
                     count in its agent's load until the visitor writes again"
                );
            }
        }
    }
    out
}

fn render_queue(out: &mut String, queue: &Value) {
    let requirement = match &queue["requirement"] {
        Value::Null => "any agent".to_string(),
        other => other.to_string(),
    };
    let _ = writeln!(
        out,
        "  queue {} ({requirement}): {} waiting, {} agent(s) may take one now",
        text(&queue["queue"]),
        queue["waiting"],
        queue["eligible"]
    );
    if let Some(level) = queue["serving_level"].as_u64() {
        let _ = writeln!(out, "    precedence level {level} serves");
    }
    for (reason, words) in REASONS {
        if let Some(count) = queue["excluded"][reason].as_u64() {
            let _ = writeln!(out, "    {count:>5} {words}");
        }
    }
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn seconds(value: &Value) -> String {
    value.as_u64().map_or("-".into(), |s| format!("{s}s"))
}
