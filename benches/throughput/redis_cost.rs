//! Parts (e) and (f): what the decisions cost Redis, with the backlog applied straight through
//! the store, free of the broker and of the other processes' load.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use switchboard::clock::{Clock, SystemClock};
use switchboard::config::Config;
use switchboard::contract::{decode, InboundEvent};
use switchboard::store::{Store, StoreOptions};

use crate::backlog::{backlog_with, mixed_backlog, Features};
use crate::cpu::cpu_seconds_named;
use crate::isolation::{forget_project, new_tag};

/// One event type's cost in Redis, from part (e).
pub struct TypeCost {
    pub event_type: String,
    pub events: usize,
    /// Mean µs of Redis's own time per call.
    pub redis_us: f64,
    /// Mean Redis commands a call ran.
    pub commands: f64,
    /// Mean µs per call, seen from the client.
    pub client_us: f64,
}

/// The store a worker with this configuration would use.
async fn store(config: &Config) -> Store {
    Store::connect(
        std::slice::from_ref(&config.redis_url),
        StoreOptions::from_config(config),
    )
    .await
    .unwrap()
}

/// The events of these bodies, as a worker decodes them.
pub fn decoded(bodies: &[Vec<u8>]) -> Vec<InboundEvent> {
    bodies.iter().map(|body| decode(body).unwrap()).collect()
}

/// Redis CPU microseconds per event for the mixed backlog (after its setup) applied straight
/// through the store in batches of `batch` events, one call at a time.
pub async fn redis_cpu_per_event(events: usize, batch: usize) -> f64 {
    redis_cpu_per_event_with(events, batch, 10, Features::Plain).await
}

/// [`redis_cpu_per_event`] for a team of `agents` in a project that uses `features`.
pub async fn redis_cpu_per_event_with(
    events: usize,
    batch: usize,
    agents: usize,
    features: Features,
) -> f64 {
    let tag = new_tag();
    let config = Config::default();
    let store = store(&config).await;
    let (setup, backlog) = backlog_with(&tag, agents, events, features);
    let (setup, backlog) = (decoded(&setup), decoded(&backlog));
    for event in &setup {
        store.apply(event, SystemClock.now_ms()).await.unwrap();
    }
    let before = cpu_seconds_named("redis-server");
    for chunk in backlog.chunks(batch) {
        let chunk: Vec<_> = chunk.iter().map(Into::into).collect();
        store
            .apply_batch(&chunk, SystemClock.now_ms())
            .await
            .unwrap();
    }
    let used = cpu_seconds_named("redis-server") - before;
    forget_project(&config, &tag).await;
    used * 1e6 / backlog.len() as f64
}

/// Applies the mixed backlog straight through the store, one event at a time, and reads Redis's
/// own time for each FCALL from its slow log (threshold 0 for the duration, then restored): the
/// cost of the apply code by event type.
pub async fn redis_time_by_type(events: usize) -> Vec<TypeCost> {
    let tag = new_tag();
    let config = Config::default();
    let store = store(&config).await;
    let (threshold, length) = (
        config_get(&store, "slowlog-log-slower-than").await,
        config_get(&store, "slowlog-max-len").await,
    );
    // The library loaded first: otherwise the first call's FCALL is logged twice (refused,
    // then again once loaded), and the log's calls no longer match the events one to one.
    store.load_library().await.unwrap();
    // Redis 7 logs the commands a function runs too: room for every one of a batch.
    config_set(&store, "slowlog-max-len", "65536").await;
    slowlog_reset(&store).await;
    config_set(&store, "slowlog-log-slower-than", "0").await;

    let (setup, backlog) = mixed_backlog(&tag, 10, events);
    let mut by_type: BTreeMap<String, (usize, f64, usize)> = BTreeMap::new();
    let mut client_us: HashMap<String, (usize, f64)> = HashMap::new();
    // The types of the events applied since the slow log was last read, in order: calls run
    // one at a time, so the log's n-th FCALL (oldest first) is the n-th of them. (The log keeps
    // only a call's first 32 arguments, fewer than its keys: the call cannot name itself.)
    let mut types: Vec<&'static str> = vec![];
    let start_ms = SystemClock.now_ms();
    // A log that does not match is reported once Redis's settings are restored.
    let mut mismatch = Ok(());
    for (i, body) in setup.iter().chain(&backlog).enumerate() {
        let event = decode(body).unwrap();
        let now_ms = start_ms + i as i64;
        types.push(event.kind.type_name());
        let started = Instant::now();
        store.apply(&event, now_ms).await.unwrap();
        let client = client_us.entry(event.kind.type_name().into()).or_default();
        client.0 += 1;
        client.1 += started.elapsed().as_secs_f64() * 1e6;
        if i % 500 == 499 || i == setup.len() + backlog.len() - 1 {
            let log: Vec<redis::Value> = store
                .query(redis::cmd("SLOWLOG").arg("GET").arg(65536))
                .await
                .unwrap();
            slowlog_reset(&store).await;
            mismatch = read_slow_log(log, &std::mem::take(&mut types), &mut by_type);
            if mismatch.is_err() {
                break;
            }
        }
    }
    config_set(&store, "slowlog-log-slower-than", &threshold).await;
    config_set(&store, "slowlog-max-len", &length).await;
    forget_project(&config, &tag).await;
    mismatch.unwrap();
    by_type
        .into_iter()
        .map(|(event_type, (n, redis, commands))| {
            let (calls, client) = client_us.get(&event_type).copied().unwrap_or((1, 0.0));
            TypeCost {
                event_type,
                events: n,
                redis_us: redis / n as f64,
                commands: commands as f64 / n as f64,
                client_us: client / calls as f64,
            }
        })
        .collect()
}

/// Adds a slow log's FCALLs to `by_type` (calls, µs, commands they ran), each named by its
/// `now` through `types`; an error when the log holds more or fewer calls than `types`.
fn read_slow_log(
    log: Vec<redis::Value>,
    types: &[&'static str],
    by_type: &mut BTreeMap<String, (usize, f64, usize)>,
) -> Result<(), &'static str> {
    // Newest first: oldest first, the commands a call ran come just before the call.
    let mut inner = 0;
    let mut calls = types.iter();
    for entry in log.into_iter().rev() {
        // [id, timestamp, microseconds, [command, args…], …]
        let redis::Value::Array(fields) = entry else {
            continue;
        };
        let (Some(redis::Value::Int(us)), Some(redis::Value::Array(args))) =
            (fields.get(2), fields.get(3))
        else {
            continue;
        };
        let name = match args.first() {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => String::new(),
        };
        match name.as_str() {
            "FCALL" => {}
            "SLOWLOG" | "CONFIG" => continue,
            _ => {
                inner += 1;
                continue;
            }
        }
        let Some(event_type) = calls.next() else {
            return Err("more FCALLs in the slow log than events applied");
        };
        let entry = by_type.entry(event_type.to_string()).or_default();
        entry.0 += 1;
        entry.1 += *us as f64;
        entry.2 += std::mem::take(&mut inner);
    }
    match calls.next() {
        Some(_) => Err("the slow log lost calls: raise slowlog-max-len"),
        None => Ok(()),
    }
}

async fn config_get(store: &Store, name: &str) -> String {
    let pair: Vec<String> = store
        .query(redis::cmd("CONFIG").arg("GET").arg(name))
        .await
        .unwrap();
    pair[1].clone()
}

async fn config_set(store: &Store, name: &str, value: &str) {
    let _: () = store
        .query(redis::cmd("CONFIG").arg("SET").arg(name).arg(value))
        .await
        .unwrap();
}

async fn slowlog_reset(store: &Store) {
    let _: () = store
        .query(redis::cmd("SLOWLOG").arg("RESET"))
        .await
        .unwrap();
}
