//! The Redis edge: one connection (a single node or a cluster) and typed calls of the function
//! library (see `script`).

mod connection;
pub mod keys;
pub mod script;

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{ErrorKind, RedisError, RetryMethod, ServerErrorKind};
use serde::Deserialize;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;

use crate::contract::outbound::TimerRequest;
use crate::contract::{Id, InboundEvent, OutboundEvent};
use crate::domain::calendar::{local_date, next_midnight};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis cannot be reached or is not serving (down, loading, failing over). Worth retrying:
    /// the event has not been applied, or was applied and will be replayed from its record.
    #[error("Redis unavailable: {0}")]
    Unavailable(RedisError),
    /// The script itself failed. Retrying would fail the same way.
    #[error("store script failed: {0}")]
    Script(RedisError),
    /// The script answered something this worker does not understand.
    #[error("unexpected store reply: {0}")]
    Reply(String),
    /// A setting that cannot work (a TLS file that became unreadable).
    #[error(transparent)]
    Settings(#[from] crate::config::SettingError),
}

/// Redis answers `ERR Function not found` to an FCALL of a library it does not hold.
fn is_function_missing(error: &RedisError) -> bool {
    error.to_string().contains("Function not found")
}

impl StoreError {
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

impl From<RedisError> for StoreError {
    fn from(error: RedisError) -> Self {
        let transient = error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
            || error.is_timeout()
            || matches!(
                error.kind(),
                ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::ClusterDown
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                        | ServerErrorKind::Moved
                        | ServerErrorKind::Ask
                )
            )
            || matches!(
                error.retry_method(),
                RetryMethod::Reconnect
                    | RetryMethod::ReconnectFromInitialConnections
                    | RetryMethod::WaitAndRetry
                    | RetryMethod::RefreshSlotsAndRetry
            )
            || error.to_string().contains("BUSY")
            // Credentials or ACL permissions refused: held until someone fixes them, never
            // dead-lettered (see `connection`).
            || connection::is_refusal(&error);
        if transient {
            StoreError::Unavailable(error)
        } else {
            StoreError::Script(error)
        }
    }
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The event had been applied before: these are the outputs recorded then.
    pub replayed: bool,
    /// When the event was first applied, ms since the epoch (the `time` of its outputs).
    pub time_ms: i64,
    pub outputs: Vec<OutboundEvent>,
    /// Timers to arm, published (and confirmed) together with the outputs.
    pub timers: Vec<TimerRequest>,
}

#[derive(Deserialize)]
struct Record {
    t: i64,
    o: Vec<OutboundEvent>,
    #[serde(default)]
    timers: Vec<TimerRequest>,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Store-level knobs.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub dedupe_ttl: Duration,
    pub closed_retention: Duration,
    /// Trust and identity for `rediss://` nodes.
    pub tls: crate::tls::TlsFiles,
    /// Replicas that must hold a call's writes before it returns (0: none, see
    /// [`Store::wait_for_replicas`]), and how long to wait for them.
    pub wait_replicas: u16,
    pub wait_timeout: Duration,
}

impl StoreOptions {
    pub fn from_config(config: &crate::config::Config) -> StoreOptions {
        StoreOptions {
            dedupe_ttl: Duration::from_secs(config.dedupe_ttl_seconds),
            closed_retention: Duration::from_secs(config.closed_retention_seconds),
            tls: crate::tls::TlsFiles::from_config(config),
            wait_replicas: config.redis_wait_replicas,
            wait_timeout: Duration::from_millis(config.redis_wait_timeout_ms),
        }
    }
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions::from_config(&crate::config::Config::default())
    }
}

/// The Redis store. Cheap to clone: connections are multiplexed.
#[derive(Clone)]
pub struct Store {
    connection: Connection,
    options: StoreOptions,
    /// Each project's time zone as last seen, so the script gets the right local date. A stale
    /// or missing entry costs one more round trip: the script names the right zone.
    timezones: Arc<Mutex<HashMap<Id, Tz>>>,
}

/// Projects whose time zone is remembered; past this the memory starts again (one extra round
/// trip per project, no wrong answer).
const REMEMBERED_TIMEZONES: usize = 100_000;

impl Store {
    /// Connects to one node, or to a cluster when several node URLs are given (each may also be
    /// a comma-separated list). A single node is connected lazily, so a worker starts (and
    /// reports not ready) while Redis is down.
    pub async fn connect(
        nodes: &[impl AsRef<str>],
        options: StoreOptions,
    ) -> Result<Store, StoreError> {
        let nodes: Vec<&str> = nodes
            .iter()
            .flat_map(|node| crate::secret::nodes(node.as_ref()))
            .collect();
        let connection = connection::open(&nodes, &options.tls).await?;
        Ok(Store {
            connection,
            options,
            timezones: Arc::default(),
        })
    }

    /// Applies one event atomically and returns the outputs it causes (or caused before).
    pub async fn apply(&self, event: &InboundEvent, now_ms: i64) -> Result<Applied, StoreError> {
        let mut applied = self.apply_batch(&[event], now_ms).await?;
        Ok(applied.remove(0))
    }

    /// Applies events of one project in order, each atomically and exactly as if it were
    /// applied alone, in one call (two when the project's time zone was not the one assumed).
    /// One call per event costs a round trip and Redis's handling of a call each time: the
    /// main cost of a small event once the function library is loaded.
    pub async fn apply_batch(
        &self,
        events: &[&InboundEvent],
        now_ms: i64,
    ) -> Result<Vec<Applied>, StoreError> {
        let Some(first) = events.first() else {
            return Ok(vec![]);
        };
        let project = &first.project;
        assert!(
            events.iter().all(|event| event.project == *project),
            "a batch holds the events of one project (one hash tag)"
        );
        let data: Vec<String> = events
            .iter()
            .map(|event| crate::domain::schedule::script_data(&event.kind, now_ms).to_string())
            .collect();
        let seed = rand::random::<u32>();
        let mut zone = self.remembered_timezone(project);
        let mut applied = Vec::with_capacity(events.len());
        while applied.len() < events.len() {
            let rest = &events[applied.len()..];
            let keys = keys::apply_keys(project, rest.iter().map(|event| event.id.as_str()));
            let mut call = redis::cmd("FCALL");
            call.arg(&script::LIBRARY.apply_function)
                .arg(keys.len())
                .arg(&keys)
                .arg(now_ms)
                .arg(seed)
                .arg(self.options.dedupe_ttl.as_secs().max(1))
                .arg(self.options.closed_retention.as_millis() as u64)
                .arg(zone.name())
                .arg(local_date(now_ms, zone))
                .arg(next_midnight(now_ms, zone));
            for (event, data) in rest.iter().zip(&data[applied.len()..]) {
                call.arg(event.kind.type_name()).arg(data);
            }
            let replies: Vec<(i64, String)> = match self.raw_query(&call).await {
                Err(error) if is_function_missing(&error) => {
                    // A Redis that restarted without persistence, a new cluster node, or the
                    // first worker of this version: load the library, then call again.
                    self.load_library().await?;
                    self.query(&call).await?
                }
                reply => reply?,
            };
            if replies.is_empty() || replies.len() > rest.len() {
                return Err(StoreError::Reply(format!(
                    "{} replies to a batch of {}",
                    replies.len(),
                    rest.len()
                )));
            }
            for (status, text) in replies {
                if status == 2 {
                    // The project's day is in another zone: this event and the rest of the
                    // batch were not applied; call again with the right zone.
                    let right: Tz = text
                        .parse()
                        .map_err(|_| StoreError::Reply(format!("unknown time zone {text}")))?;
                    if right == zone {
                        // The script refused the zone it asks for: a contradiction, not worth
                        // a loop.
                        return Err(StoreError::Reply(format!(
                            "the script refused time zone {text}"
                        )));
                    }
                    self.remember_timezone(project, right);
                    zone = right;
                    break;
                }
                let record: Record = serde_json::from_str(&text)
                    .map_err(|e| StoreError::Reply(format!("{e}: {text}")))?;
                applied.push(Applied {
                    replayed: status == 1,
                    time_ms: record.t,
                    outputs: record.o,
                    timers: record.timers,
                });
            }
        }
        self.wait_for_replicas(project).await?;
        Ok(applied)
    }

    fn remembered_timezone(&self, project: &Id) -> Tz {
        let zones = self.timezones.lock().expect("not poisoned");
        zones.get(project).copied().unwrap_or(Tz::UTC)
    }

    fn remember_timezone(&self, project: &Id, zone: Tz) {
        let mut zones = self.timezones.lock().expect("not poisoned");
        if zones.len() >= REMEMBERED_TIMEZONES {
            zones.clear();
        }
        zones.insert(project.clone(), zone);
    }

    /// Loads this build's function library (on every master of a cluster). Loading is
    /// idempotent: workers of the same version load the same code under the same name.
    pub async fn load_library(&self) -> Result<(), StoreError> {
        let mut load = redis::cmd("FUNCTION");
        load.arg("LOAD").arg("REPLACE").arg(&script::LIBRARY.code);
        let _: redis::Value = self.query(&load).await?;
        tracing::info!(library = %script::LIBRARY.name, "loaded the Redis function library");
        Ok(())
    }

    /// How many conversations wait in each project's queue, in the order given. One ZCARD per
    /// project, sent together (a cluster routes each to its project's node).
    pub async fn waiting_depths(&self, projects: &[Id]) -> Result<Vec<u64>, StoreError> {
        let counts = projects.iter().map(|project| async move {
            let mut count = redis::cmd("ZCARD");
            count.arg(keys::project_key(project, "waiting"));
            self.query::<u64>(&count).await
        });
        futures_util::future::try_join_all(counts).await
    }

    /// Is Redis answering?
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Runs an arbitrary command (the CLI's `inspect` and the tests read state with it).
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        Ok(self.raw_query(cmd).await?)
    }

    async fn raw_query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match &self.connection {
            Connection::Single(c) => cmd.query_async(&mut c.clone()).await,
            Connection::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }
}
