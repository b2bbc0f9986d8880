//! The backlog metrics: how many conversations wait in each project's queue, and how long the
//! longest has waited, read live from Redis whenever `/metrics` is scraped.
//!
//! Counting at scrape time, rather than remembering what the last event left behind, keeps the
//! figure true when other workers have drained the queue since: every worker reports the same
//! value for a project, so a dashboard takes `max by (project)`. A worker reports the projects
//! it has handled an event for in the last [`REPORTED_FOR`] (at most [`MAX_PROJECTS`], the most
//! recent), which keeps the label set bounded however many tenants share the deployment.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::clock::Clock;
use crate::contract::Id;
use crate::store::Store;

/// How long after its last event a project is still reported.
pub const REPORTED_FOR: Duration = Duration::from_secs(15 * 60);
/// The most projects one worker reports.
pub const MAX_PROJECTS: usize = 1000;
/// How long a scrape waits for Redis before serving the other metrics without the backlog.
const SCRAPE_BUDGET: Duration = Duration::from_secs(2);

/// Projects this worker has seen lately, and the scrape-time count of their waiting queues.
pub struct Backlog {
    store: Store,
    /// The worker's clock: the longest wait is measured with it.
    clock: Arc<dyn Clock>,
    seen: Mutex<HashMap<Id, Instant>>,
}

impl Backlog {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Backlog {
        Backlog {
            store,
            clock,
            seen: Mutex::default(),
        }
    }

    /// Notes that `project` had an event now.
    pub fn saw(&self, project: &Id) {
        let mut seen = self.seen.lock().expect("not poisoned");
        match seen.get_mut(project) {
            Some(at) => *at = Instant::now(),
            None => {
                seen.insert(project.clone(), Instant::now());
            }
        }
    }

    /// The projects to report: seen within [`REPORTED_FOR`], the most recent first, at most
    /// [`MAX_PROJECTS`]. Forgets the others.
    fn reported(&self) -> Vec<Id> {
        let mut seen = self.seen.lock().expect("not poisoned");
        seen.retain(|_, at| at.elapsed() <= REPORTED_FOR);
        let mut recent: Vec<(&Id, &Instant)> = seen.iter().collect();
        recent.sort_by(|a, b| b.1.cmp(a.1));
        recent
            .into_iter()
            .take(MAX_PROJECTS)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Prometheus text for `switchboard_waiting_conversations` and
    /// `switchboard_longest_wait_seconds`; empty when Redis cannot answer (the rest of
    /// `/metrics` is still served).
    pub async fn render(&self) -> String {
        let now_ms = self.clock.now_ms();
        let projects = self.reported();
        let depths =
            match tokio::time::timeout(SCRAPE_BUDGET, self.store.waiting_depths(&projects)).await {
                Ok(Ok(depths)) => depths,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "backlog not reported: Redis unavailable");
                    return String::new();
                }
                Err(_) => {
                    tracing::debug!("backlog not reported: Redis too slow");
                    return String::new();
                }
            };
        let mut text = String::from(
            "# HELP switchboard_waiting_conversations Conversations waiting for an agent, by project (read at scrape time).\n\
             # TYPE switchboard_waiting_conversations gauge\n",
        );
        for (project, (depth, _)) in projects.iter().zip(&depths) {
            // Project ids are validated identifiers: nothing in them needs escaping.
            let _ = writeln!(
                text,
                "switchboard_waiting_conversations{{project=\"{project}\"}} {depth}"
            );
        }
        text.push_str(
            "# HELP switchboard_longest_wait_seconds How long the conversation that has waited longest has waited, by project (read at scrape time; 0 when nobody waits).\n\
             # TYPE switchboard_longest_wait_seconds gauge\n",
        );
        for (project, (_, since)) in projects.iter().zip(&depths) {
            let waited = since.map_or(0.0, |since| (now_ms - since).max(0) as f64 / 1000.0);
            let _ = writeln!(
                text,
                "switchboard_longest_wait_seconds{{project=\"{project}\"}} {waited:.3}"
            );
        }
        text
    }
}
