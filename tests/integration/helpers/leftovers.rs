//! What a test process leaves in the machine's Redis, forgotten when the process exits: the
//! keys of the projects its tests made ([`note_project`]: `Platform::new` calls it for every
//! project it makes, and a test whose project comes from elsewhere, a simulation or the Python
//! example, calls it itself).
//!
//! `scripts/test.sh` sweeps after a whole run anyway (`scripts/forget-test-data.sh`); this is
//! for tests run on their own (`cargo nextest run <filter>`, `cargo test`), which would
//! otherwise leave their projects' keys in the shared Redis. It runs when the process exits,
//! after the test's workers are gone (nextest runs each test in a process of its own; a
//! `cargo test` process forgets all of its tests' projects at its end), so nothing writes them
//! again. A process killed outright forgets nothing: the sweep is for that. The test topology's
//! queues and exchanges go with `Env::cleanup`; this build's function library stays, as other
//! test processes may be calling it.

use std::sync::{Mutex, Once};
use std::time::Duration;

use switchboard::contract::Id;
use switchboard::store::keys;

use super::names::redis_url;

static PROJECTS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static AT_EXIT: Once = Once::new();

/// Deletes the keys of one project, "sb:{<project>}:*": every key of a project shares its
/// hash tag, so the script declaring one of them runs on the node (of a cluster) holding them
/// all.
const FORGET_PROJECT: &str = r"
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', ARGV[1], 'COUNT', 1000)
  cursor = page[1]
  if #page[2] > 0 then redis.call('UNLINK', unpack(page[2])) end
until cursor == '0'
";

/// Notes a project this process made: its keys are deleted from the machine's Redis when the
/// process exits.
pub fn note_project(project: &str) {
    PROJECTS.lock().unwrap().push(project.to_string());
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function without arguments, as atexit(3) expects.
        unsafe { libc::atexit(forget_projects) };
    });
}

extern "C" fn forget_projects() {
    let projects = std::mem::take(&mut *PROJECTS.lock().unwrap_or_else(|e| e.into_inner()));
    if let Err(error) = forget(&projects) {
        eprintln!("the test's projects were not forgotten in Redis: {error}");
    }
}

fn forget(projects: &[String]) -> redis::RedisResult<()> {
    let script = redis::Script::new(FORGET_PROJECT);
    let url = redis_url();
    let nodes: Vec<&str> = url.split(',').collect();
    let mut connection: Box<dyn redis::ConnectionLike> = if nodes.len() > 1 {
        Box::new(
            redis::cluster::ClusterClient::builder(nodes)
                .connection_timeout(Duration::from_secs(2))
                .build()?
                .get_connection()?,
        )
    } else {
        Box::new(
            redis::Client::open(url.as_str())?
                .get_connection_with_timeout(Duration::from_secs(2))?,
        )
    };
    // An id the contract rejects names no key: no worker writes for it.
    for project in projects.iter().filter_map(|p| Id::parse(p).ok()) {
        script
            .key(keys::project_key(&project, "settings"))
            .arg(format!("{}*", keys::project_prefix(&project)))
            .invoke::<()>(connection.as_mut())?;
    }
    Ok(())
}
