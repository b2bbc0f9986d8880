//! The Redis edge: one multiplexed connection (a single node or a cluster), or several taken in
//! turn (`SWITCHBOARD_REDIS_CONNECTIONS`), and typed calls of the function library (see
//! `script`).

pub mod confirmations;
mod connection;
#[cfg(test)]
mod core_tests;
pub mod eviction;
pub mod explain;
mod forget;
pub mod interface;
pub mod keys;
pub mod read;
pub mod script;

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{ErrorKind, RedisError, RetryMethod, ServerErrorKind};
use serde::Deserialize;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono_tz::Tz;

use crate::contract::outbound::TimerRequest;
use crate::contract::{Id, InboundEvent, OutboundEvent};
use crate::domain::calendar::{local_date, next_midnight};
use interface::ReplyCode;

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
    /// The library failed on one event (a bug): retrying would fail the same way.
    #[error("the store failed on this event: {0}")]
    Failed(String),
    /// A setting that cannot work (a TLS file that became unreadable).
    #[error(transparent)]
    Settings(#[from] crate::config::SettingError),
}

/// Redis answers `ERR Function not found` to an FCALL of a library it does not hold.
fn is_function_missing(error: &RedisError) -> bool {
    error.to_string().contains("Function not found")
}

impl StoreError {
    /// Worth retrying: the event is held, not dead-lettered. A TLS file that became
    /// unreadable while reconnecting is held too, until the operator mends it: no event is
    /// at fault.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Settings(_))
    }

    /// The same failure, held as an outage: for commands whose failure cannot be an event's
    /// fault (waiting for replicas), so that no event is dead-lettered for it.
    pub(crate) fn into_unavailable(self) -> StoreError {
        match self {
            StoreError::Script(error) => StoreError::Unavailable(error),
            StoreError::Reply(text) => StoreError::Unavailable(RedisError::from((
                ErrorKind::Server(ServerErrorKind::TryAgain),
                "unexpected reply",
                text,
            ))),
            held => held,
        }
    }
}

/// Redis error codes of a node that cannot take or keep writes for a while: its role changed
/// under a blocked command (`WAIT` on a master demoted in a failover: what the call wrote may be
/// gone, and nothing of it was published), it lacks the replicas its `min-replicas-to-write` asks
/// for, it is full (`maxmemory` without eviction), or a snapshot failed (a full disk, say) and
/// `stop-writes-on-bgsave-error` holds writes; in the last three it applied nothing. No event
/// is at fault, so they are outages: the events are held and retried.
const REFUSED_WRITE_CODES: [&str; 4] = ["UNBLOCKED", "NOREPLICAS", "OOM", "MISCONF"];

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
            // The node cannot take or keep writes for a while (see `REFUSED_WRITE_CODES`).
            || matches!(error.code(), Some(code) if REFUSED_WRITE_CODES.contains(&code))
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

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Applied now.
    Applied,
    /// Applied before, its outputs not confirmed since (a redelivery after a crash): they are
    /// published again, with the same ids.
    Replayed,
    /// Seen before, its outputs confirmed: nothing to publish.
    Duplicate,
    /// Older than the state of what it would change (the platform published a later event
    /// about it, applied first): nothing changed, nothing to publish.
    Stale,
}

impl Outcome {
    /// The `outcome` label of `switchboard_events_total`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Replayed => "replayed",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
        }
    }
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub outcome: Outcome,
    /// When the event was first applied, ms since the epoch (the `time` of its outputs).
    pub time_ms: i64,
    pub outputs: Vec<OutboundEvent>,
    /// Timers to arm, published (and confirmed) together with the outputs.
    pub timers: Vec<TimerRequest>,
    /// Where the event is recorded, for [`Store::confirm`]: its generation and digest.
    pub record: RecordRef,
}

impl Applied {
    /// The event had been applied before: these are the outputs recorded then.
    pub fn replayed(&self) -> bool {
        self.outcome == Outcome::Replayed
    }

    /// Whether the store keeps its outputs for a replay until told they were confirmed.
    pub fn awaits_confirmation(&self) -> bool {
        matches!(self.outcome, Outcome::Applied | Outcome::Replayed)
            && !(self.outputs.is_empty() && self.timers.is_empty())
    }
}

/// Where an event's record is: the generation of records it was written to, and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecordRef {
    pub generation: u64,
    pub digest: String,
    /// Once its outputs are confirmed, the record stays as "seen" rather than going: it ends
    /// with [`interface::STAYS_SEEN_MARK`]. Told to the library with the confirmation, which
    /// then drops the others without reading them first.
    pub stays_seen: bool,
}

impl RecordRef {
    /// The confirmation as the library's ARGV carries it: the digest, after
    /// [`interface::STAYS_SEEN_CONFIRMATION`] when the record stays as seen.
    fn confirmation(&self) -> std::borrow::Cow<'_, str> {
        if self.stays_seen {
            format!("{}{}", interface::STAYS_SEEN_CONFIRMATION, self.digest).into()
        } else {
            self.digest.as_str().into()
        }
    }
}

/// One event to apply, and whether the broker delivers it again (then the record an earlier
/// release may have kept for it is looked up too).
#[derive(Debug, Clone, Copy)]
pub struct Delivered<'a> {
    pub event: &'a InboundEvent,
    pub redelivered: bool,
}

impl<'a> From<&'a InboundEvent> for Delivered<'a> {
    fn from(event: &'a InboundEvent) -> Self {
        Delivered {
            event,
            redelivered: false,
        }
    }
}

/// An event's record as the library keeps it: when it was applied, its outputs and timers.
#[derive(Deserialize)]
struct Record {
    t: i64,
    o: Vec<OutboundEvent>,
    #[serde(default)]
    timers: Vec<TimerRequest>,
}

impl Applied {
    /// The result of one event from its reply: a record, or "" when there is nothing to publish.
    fn from_record(outcome: Outcome, text: &str, record: RecordRef) -> Result<Applied, StoreError> {
        if text.is_empty() {
            return Ok(Applied {
                outcome,
                time_ms: 0,
                outputs: vec![],
                timers: vec![],
                record,
            });
        }
        let stored: Record =
            serde_json::from_str(text).map_err(|e| StoreError::Reply(format!("{e}: {text}")))?;
        Ok(Applied {
            outcome,
            time_ms: stored.t,
            outputs: stored.o,
            timers: stored.timers,
            record,
        })
    }
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
    pub tls: crate::config::tls::TlsFiles,
    /// Replicas that must hold a call's writes before it returns (0: none, see
    /// [`Store::wait_for_replicas`]), and how long to wait for them.
    pub wait_replicas: u16,
    pub wait_timeout: Duration,
    /// Multiplexed connections to Redis, used in turn (at least 1).
    pub connections: u16,
    /// What the library writes (both layouts are read).
    pub store_layout: crate::config::StoreLayout,
}

impl StoreOptions {
    pub fn from_config(config: &crate::config::Config) -> StoreOptions {
        StoreOptions {
            dedupe_ttl: Duration::from_secs(config.dedupe_ttl_seconds),
            closed_retention: Duration::from_secs(config.closed_retention_seconds),
            tls: config.tls_files(),
            wait_replicas: config.redis_wait_replicas,
            wait_timeout: Duration::from_millis(config.redis_wait_timeout_ms),
            connections: config.redis_connections,
            store_layout: crate::config::StoreLayout::from_number(config.store_layout)
                .expect("the configuration's store_layout was checked"),
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
    /// One or more (`StoreOptions::connections`); each call takes the next in turn. Nothing
    /// depends on two calls sharing a connection: events are ordered by their `time` in Redis,
    /// and `WAIT` is sent on every connection (see [`Store::wait_for_replicas`]).
    connections: Arc<[Connection]>,
    next: Arc<AtomicUsize>,
    options: StoreOptions,
    /// Each project's time zone as last seen, so the script gets the right local date. A stale
    /// or missing entry costs one more round trip: the script names the right zone.
    timezones: Arc<Mutex<HashMap<Id, Tz>>>,
    /// Events whose outputs the broker confirmed, per project, not yet told to Redis: the
    /// project's next `apply` carries those of its generation (see [`Store::confirmed_later`]).
    confirmed: Arc<Mutex<HashMap<Id, Vec<RecordRef>>>>,
}

/// At most this many confirmations ride along with one `apply` (the rest wait for the next).
const CONFIRMED_PER_CALL: usize = 512;

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
        let mut connections = Vec::with_capacity(options.connections.max(1).into());
        for _ in 0..options.connections.max(1) {
            connections.push(connection::open(&nodes, &options.tls).await?);
        }
        Ok(Store {
            connections: connections.into(),
            next: Arc::default(),
            options,
            timezones: Arc::default(),
            confirmed: Arc::default(),
        })
    }

    /// Applies one event atomically and returns the outputs it causes (or caused before).
    pub async fn apply(&self, event: &InboundEvent, now_ms: i64) -> Result<Applied, StoreError> {
        let mut applied = self.apply_batch(&[event.into()], now_ms).await?;
        applied.remove(0)
    }

    /// The ARGV every call of the library shares (see `interface::SHARED_ARGS`), in order;
    /// `confirmed` digests follow the call's own arguments (`apply` only).
    fn shared_args(
        &self,
        call: &mut redis::Cmd,
        now_ms: i64,
        seed: u32,
        zone: Tz,
        confirmed: usize,
    ) {
        let (generation, generation_start) = self.generation(now_ms);
        call.arg(now_ms)
            .arg(seed)
            .arg(self.options.closed_retention.as_millis() as u64)
            .arg(zone.name())
            .arg(local_date(now_ms, zone))
            .arg(next_midnight(now_ms, zone))
            .arg(generation)
            .arg(generation_start)
            .arg(self.options.dedupe_ttl.as_secs().max(1) * 2)
            .arg(self.options.store_layout.number())
            .arg(confirmed);
    }

    /// The generation of event records at `now_ms`, and when it began (us since the epoch).
    pub fn generation(&self, now_ms: i64) -> (u64, i64) {
        let length_ms = (self.options.dedupe_ttl.as_millis() as i64).max(1000);
        let generation = now_ms.max(0) / length_ms;
        (generation as u64, generation * length_ms * 1000)
    }

    /// Applies events of one project in order, each atomically and exactly as if it were
    /// applied alone, in one call (two when the project's time zone was not the one assumed).
    /// One call per event costs a round trip and Redis's handling of a call each time: the
    /// main cost of a small event once the function library is loaded. The results are in the
    /// events' order; an event the library failed on (a bug) is an error of its own, and the
    /// events after it are applied in a call of their own.
    pub async fn apply_batch(
        &self,
        events: &[Delivered<'_>],
        now_ms: i64,
    ) -> Result<Vec<Result<Applied, StoreError>>, StoreError> {
        let Some(first) = events.first() else {
            return Ok(vec![]);
        };
        let project = &first.event.project;
        assert!(
            events.iter().all(|d| d.event.project == *project),
            "a batch holds the events of one project (one hash tag)"
        );
        let data: Vec<String> = events
            .iter()
            .map(|d| crate::domain::schedule::script_data(&d.event.kind, now_ms).to_string())
            .collect();
        let digests: Vec<String> = events
            .iter()
            .map(|d| keys::event_digest(&d.event.id))
            .collect();
        let (generation, _) = self.generation(now_ms);
        let seed = rand::random::<u32>();
        let mut zone = self.remembered_timezone(project);
        // Confirmations of this project's generation ride along with the first call.
        let mut confirmed = self.take_confirmed_of(project, generation);
        let mut results: Vec<Result<Applied, StoreError>> = Vec::with_capacity(events.len());
        while results.len() < events.len() {
            let done = results.len();
            let rest = &events[done..];
            let redelivered = rest.iter().filter(|d| d.redelivered);
            let keys = keys::apply_keys(
                project,
                generation,
                redelivered
                    .map(|d| d.event.id.as_str())
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            let mut call = redis::cmd("FCALL");
            call.arg(&script::LIBRARY.apply_function)
                .arg(keys.len())
                .arg(&keys);
            self.shared_args(
                &mut call,
                now_ms,
                seed.wrapping_add(done as u32),
                zone,
                confirmed.len(),
            );
            let mut legacy = interface::DECLARED_KEYS.len();
            for (i, delivered) in rest.iter().enumerate() {
                let index = if delivered.redelivered {
                    legacy += 1;
                    legacy
                } else {
                    0
                };
                let time = delivered.event.time_us.map(|t| t.to_string());
                call.arg(delivered.event.kind.type_name())
                    .arg(&data[done + i])
                    .arg(time.as_deref().unwrap_or(""))
                    .arg(&digests[done + i])
                    .arg(index);
            }
            for record in &confirmed {
                call.arg(record.confirmation().as_ref());
            }
            // A flat list, code and text of each event in turn: redis-rs pairs them.
            let replies: Vec<(i64, String)> = self.call_library(&call).await.inspect_err(|_| {
                // They may not have been written: they wait for the next call (writing one
                // twice changes nothing).
                self.confirmed_later_all(project, std::mem::take(&mut confirmed));
            })?;
            confirmed.clear();
            if replies.is_empty() || replies.len() > rest.len() {
                return Err(StoreError::Reply(format!(
                    "{} replies to a batch of {}",
                    replies.len(),
                    rest.len()
                )));
            }
            for (code, text) in replies {
                let record = RecordRef {
                    generation,
                    digest: digests[results.len()].clone(),
                    stays_seen: text.ends_with(interface::STAYS_SEEN_MARK),
                };
                let outcome = match ReplyCode::from_code(code) {
                    Some(ReplyCode::Applied) => Outcome::Applied,
                    Some(ReplyCode::Replayed) => Outcome::Replayed,
                    Some(ReplyCode::Duplicate) => Outcome::Duplicate,
                    Some(ReplyCode::Stale) => Outcome::Stale,
                    Some(ReplyCode::WrongTimezone) => {
                        // The project's day is in another zone: this event and the rest of the
                        // batch were not applied; call again with the right zone.
                        let right: Tz = text
                            .parse()
                            .map_err(|_| StoreError::Reply(format!("unknown time zone {text}")))?;
                        if right == zone {
                            // The script refused the zone it asks for: a contradiction, not
                            // worth a loop.
                            return Err(StoreError::Reply(format!(
                                "the script refused time zone {text}"
                            )));
                        }
                        self.remember_timezone(project, right);
                        zone = right;
                        break;
                    }
                    Some(ReplyCode::Failed) => {
                        // A bug on this event: it is the one at fault; the rest of the batch
                        // was not applied and goes in the next call.
                        results.push(Err(StoreError::Failed(text)));
                        break;
                    }
                    None => return Err(StoreError::Reply(format!("unknown reply code {code}"))),
                };
                results.push(Ok(Applied::from_record(outcome, &text, record)?));
            }
        }
        self.wait_for_replicas(project).await?;
        Ok(results)
    }

    /// Tells the store that the outputs of these events of `project` were confirmed by the
    /// broker: they need no replay, and a duplicate of one of them publishes nothing. The
    /// events are remembered as seen until their generation expires.
    pub async fn confirm(&self, project: &Id, records: &[RecordRef]) -> Result<(), StoreError> {
        let mut by_generation: Vec<(u64, Vec<std::borrow::Cow<'_, str>>)> = Vec::new();
        for record in records {
            match by_generation
                .iter_mut()
                .find(|(g, _)| *g == record.generation)
            {
                Some((_, digests)) => digests.push(record.confirmation()),
                None => by_generation.push((record.generation, vec![record.confirmation()])),
            }
        }
        for (generation, digests) in by_generation {
            let mut call = redis::cmd("FCALL");
            call.arg(&script::LIBRARY.confirm_function)
                .arg(1)
                .arg(keys::events_key(project, generation))
                .arg(digests);
            let _: i64 = self.call_library(&call).await?;
        }
        Ok(())
    }

    /// The broker confirmed the outputs of this event of `project`: the project's next `apply`
    /// tells Redis (at no call of its own), or [`Store::take_confirmed`]'s caller does.
    pub fn confirmed_later(&self, project: &Id, record: RecordRef) {
        self.confirmed_later_all(project, vec![record]);
    }

    fn confirmed_later_all(&self, project: &Id, records: Vec<RecordRef>) {
        if records.is_empty() {
            return;
        }
        let mut confirmed = self.confirmed.lock().expect("not poisoned");
        confirmed
            .entry(project.clone())
            .or_default()
            .extend(records);
    }

    /// Every confirmation not told to Redis yet, by project (for [`Store::confirm`]).
    pub fn take_confirmed(&self) -> Vec<(Id, Vec<RecordRef>)> {
        let mut confirmed = self.confirmed.lock().expect("not poisoned");
        confirmed.drain().collect()
    }

    /// The project's waiting confirmations of `generation` (at most [`CONFIRMED_PER_CALL`]);
    /// those of another generation stay for a `confirm` call.
    fn take_confirmed_of(&self, project: &Id, generation: u64) -> Vec<RecordRef> {
        let mut confirmed = self.confirmed.lock().expect("not poisoned");
        let Some(records) = confirmed.get_mut(project) else {
            return vec![];
        };
        let mut taken = Vec::new();
        records.retain(|record| {
            let take = record.generation == generation && taken.len() < CONFIRMED_PER_CALL;
            if take {
                taken.push(record.clone());
            }
            !take
        });
        if records.is_empty() {
            confirmed.remove(project);
        }
        taken
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

    /// Each project's waiting queue, in the order given: how many wait, and since when the one
    /// that has waited longest waits (ms since the epoch; `None` when nobody waits). A ZCARD
    /// and a ZRANGE per project, sent together (a cluster routes each to its project's node).
    pub async fn waiting_depths(
        &self,
        projects: &[Id],
    ) -> Result<Vec<(u64, Option<i64>)>, StoreError> {
        let reads = projects.iter().map(|project| async move {
            let mut count = redis::cmd("ZCARD");
            count.arg(keys::project_key(project, "waiting"));
            let mut oldest = redis::cmd("ZRANGE");
            oldest
                .arg(keys::project_key(project, "waited"))
                .arg(0)
                .arg(0)
                .arg("WITHSCORES");
            let (depth, oldest) = futures_util::future::try_join(
                self.query::<u64>(&count),
                self.query::<Vec<(String, f64)>>(&oldest),
            )
            .await?;
            Ok::<_, StoreError>((depth, oldest.first().map(|(_, since)| *since as i64)))
        });
        futures_util::future::try_join_all(reads).await
    }

    /// Is Redis answering?
    pub async fn ping(&self) -> Result<(), StoreError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Would Redis start a call of the library now? Calls its `probe` function (loading the
    /// library where it is missing), which changes nothing and which Redis refuses wherever it
    /// would refuse `apply`: a master at its memory limit, short of replicas or unable to save,
    /// a replica. Redis answers PING in most of those, and a worker that judged by PING would
    /// say it is ready while every event it takes is held.
    pub async fn probe(&self) -> Result<(), StoreError> {
        let mut probe = redis::cmd("FCALL");
        probe.arg(&script::LIBRARY.probe_function).arg(0);
        let _: i64 = self.call_library(&probe).await?;
        Ok(())
    }

    /// How Redis makes room when it is full, as each node reports it (`maxmemory-policy`,
    /// from `INFO memory`; see [`eviction`]).
    pub async fn eviction_policies(&self) -> Result<Vec<String>, StoreError> {
        let info: redis::Value = self.query(redis::cmd("INFO").arg("memory")).await?;
        Ok(eviction::policies_in(&info))
    }

    /// Runs an arbitrary command (the CLI's `inspect` and the tests read state with it).
    pub async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        Ok(self.raw_query(cmd).await?)
    }

    /// Calls a function of the library. A Redis that lacks it (restarted without persistence, a
    /// new cluster node, or the first worker of this version) gets it loaded, and the call is
    /// made again.
    async fn call_library<T: redis::FromRedisValue>(
        &self,
        call: &redis::Cmd,
    ) -> Result<T, StoreError> {
        match self.raw_query(call).await {
            Err(error) if is_function_missing(&error) => {
                self.load_library().await?;
                self.query(call).await
            }
            reply => Ok(reply?),
        }
    }

    async fn raw_query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self.connection() {
            Connection::Single(c) => cmd.query_async(&mut c.clone()).await,
            Connection::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }

    /// The next connection in turn.
    fn connection(&self) -> &Connection {
        if self.connections.len() == 1 {
            return &self.connections[0];
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        &self.connections[turn % self.connections.len()]
    }
}
