//! Why conversations wait: the library's read-only `explain` function, for `switchboard
//! inspect --waiting` and `--conversation`. It evaluates each agent with the same rules the
//! decisions use (core.lua), so the reasons it gives are the ones that hold.

use serde_json::Value;

use super::{keys, script, Store, StoreError};
use crate::contract::Id;

/// What to explain.
#[derive(Debug, Clone)]
pub enum Question<'a> {
    /// The first `limit` waiting conversations, and for each queue they wait in, why its agents
    /// cannot take them.
    Waiting { limit: usize },
    /// One conversation: its state, rule and step, queue, candidates or decision.
    Conversation(&'a str),
}

impl Store {
    /// The explanation, as the library writes it (JSON).
    pub async fn explain(
        &self,
        project: &Id,
        question: Question<'_>,
        now_ms: i64,
    ) -> Result<Value, StoreError> {
        let (generation, _) = self.generation(now_ms);
        let keys = keys::apply_keys(project, generation, std::iter::empty());
        let mut call = redis::cmd("FCALL");
        call.arg(&script::LIBRARY.explain_function)
            .arg(keys.len())
            .arg(&keys);
        self.shared_args(&mut call, now_ms, 0, self.remembered_timezone(project), 0);
        match question {
            Question::Waiting { limit } => call.arg("waiting").arg(limit),
            Question::Conversation(id) => call.arg("conversation").arg(id),
        };
        let text: String = self.call_library(&call).await?;
        serde_json::from_str(&text).map_err(|e| StoreError::Reply(format!("{e}: {text}")))
    }
}
