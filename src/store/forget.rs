//! Forgetting a whole project: every key under its prefix, `sb:{<project>}:`, on the node that
//! holds its hash tag's slot (one node, or that slot's master in a cluster).
//!
//! A platform's tenant that leaves takes its agents, conversations and visitors' memory with
//! it: nothing of it should stay in Redis until retention would have dropped it, or forever
//! (settings, agents). A project's keys all carry its id as their hash tag, and an id cannot
//! contain `}` or a glob character (see `contract::ids`), so the pattern matches that project
//! alone: `acme` never reaches `acme.eu`'s keys.

use super::{keys, Store, StoreError};
use crate::contract::Id;

/// Keys asked for per `SCAN` step, and deleted per `UNLINK`.
const KEYS_PER_STEP: usize = 1000;

impl Store {
    /// Every key of `project`, found with `SCAN` (which never blocks Redis for long, however
    /// many keys it holds) on the node that holds them.
    pub async fn project_keys(&self, project: &Id) -> Result<Vec<String>, StoreError> {
        let pattern = format!("{}*", keys::project_prefix(project));
        let mut found = Vec::new();
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(KEYS_PER_STEP);
            let (next, keys): (u64, Vec<String>) = self.connections[0]
                .on_project_node(project, &scan, "SCAN")
                .await?;
            found.extend(keys);
            if next == 0 {
                found.sort();
                found.dedup();
                return Ok(found);
            }
            cursor = next;
        }
    }

    /// Deletes every key of `project` (`UNLINK`: Redis frees their memory off its main
    /// thread). Returns how many were deleted. Events of the project applied meanwhile write
    /// keys again: stop the platform's events for it first.
    pub async fn forget_project(&self, project: &Id) -> Result<usize, StoreError> {
        let found = self.project_keys(project).await?;
        let mut deleted = 0;
        for chunk in found.chunks(KEYS_PER_STEP) {
            let mut unlink = redis::cmd("UNLINK");
            unlink.arg(chunk);
            let removed: usize = self.connections[0]
                .on_project_node(project, &unlink, "UNLINK")
                .await?;
            deleted += removed;
        }
        Ok(deleted)
    }
}
