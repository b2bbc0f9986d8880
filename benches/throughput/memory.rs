//! Part (m): Redis memory per open conversation and per closed conversation still remembered,
//! conversations applied straight through the store (as a worker applies them, in batches),
//! read with `INFO memory` (`used_memory` before and after) and broken down by key with
//! `MEMORY USAGE … SAMPLES 0` (every element counted). Measures only: the layout is the
//! store's.

use serde_json::{json, Value};
use switchboard::clock::{Clock, SystemClock};
use switchboard::config::{Config, StoreLayout};
use switchboard::contract::{decode, Id, InboundEvent};
use switchboard::store::{keys, Store, StoreOptions};

use crate::backlog::{event, numbering, online_team};
use crate::flags::Flags;
use crate::isolation::{forget_project, keys_matching, new_tag};
use crate::redis_cost::decoded;
use crate::report::Report;

/// The targets of the project's notes, bytes per conversation.
const OPEN_TARGET: f64 = 300.0;
const CLOSED_TARGET: f64 = 200.0;

async fn used_memory(store: &Store) -> f64 {
    let info: String = store.query(redis::cmd("INFO").arg("memory")).await.unwrap();
    info.lines()
        .find_map(|l| l.trim().strip_prefix("used_memory:"))
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Bytes per key of `project` (`MEMORY USAGE`, every element), by key name without the prefix
/// (event-record generations as `events:<n>`, the agents' load keys all as `owned:<agent>`,
/// the visitors' buckets all as `visitors:<bucket>`).
async fn by_key(config: &Config, store: &Store, project: &Id) -> Vec<(String, f64)> {
    let prefix = keys::project_prefix(project);
    let mut found = vec![];
    for name in keys_matching(config, &format!("{prefix}*")).await {
        let bytes: Option<u64> = store
            .query(
                redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(&name)
                    .arg("SAMPLES")
                    .arg(0),
            )
            .await
            .unwrap();
        let mut short = name[prefix.len()..].to_string();
        // Each agent's load key (layout 2) counts in one row.
        if short.starts_with("owned:") {
            short = "owned:<agent>".into();
        } else if short.starts_with("visitors:") {
            short = "visitors:<bucket>".into();
        }
        found.push((short, bytes.unwrap_or(0) as f64));
    }
    found.sort_by(|a, b| b.1.total_cmp(&a.1));
    found
}

/// Applies `events` in batches as a worker does, and confirms their outputs as a worker does
/// once the broker has (the store then keeps only what it needs after the confirm).
async fn apply_all(store: &Store, events: &[InboundEvent], batch: usize) {
    for chunk in events.chunks(batch) {
        let delivered: Vec<_> = chunk.iter().map(Into::into).collect();
        let mut records = vec![];
        for result in store
            .apply_batch(&delivered, SystemClock.now_ms())
            .await
            .unwrap()
        {
            let applied = result.unwrap();
            if applied.awaits_confirmation() {
                records.push(applied.record);
            }
        }
        if !records.is_empty() {
            store.confirm(&chunk[0].project, &records).await.unwrap();
        }
    }
}

/// Room for every conversation as a real team would hold them: `n / 10` agents online, each
/// taking at most 10 (an agent's own load key, in layout 2, is then as small as in production).
fn team(project: &str, n: u64) -> Vec<Vec<u8>> {
    let patches: Vec<Value> = (0..n / 10)
        .map(|i| json!({"agent_id": format!("agent-{i}"), "max_concurrent": 10}))
        .collect();
    online_team(project, &patches, numbering())
}

/// What one store layout costs: bytes per conversation open and closed, and each key's
/// growth (open, closed) per conversation.
struct Measured {
    per_open: f64,
    per_closed: f64,
    keys: Vec<(String, f64, f64)>,
}

/// Applies `n` creations, then their closings, to a new project whose records are written in
/// `layout`, and measures what Redis holds after each.
async fn measure(config: &Config, layout: StoreLayout, n: u64) -> Measured {
    let options = StoreOptions {
        store_layout: layout,
        ..StoreOptions::from_config(config)
    };
    let store = Store::connect(std::slice::from_ref(&config.redis_url), options)
        .await
        .unwrap();
    let tag = new_tag();
    let project = Id::parse(&tag).unwrap();
    let batch = usize::from(config.batch_size);
    eprintln!(
        "(m) {n} conversations opened, then closed, store layout {}…",
        layout.number()
    );
    apply_all(&store, &decoded(&team(&tag, n)), batch).await;
    let events = |offset: u64, event_type: &str, data: &dyn Fn(u64) -> serde_json::Value| {
        (1..=n)
            .map(|i| decode(&event(&tag, offset + i, event_type, data(i))).unwrap())
            .collect::<Vec<InboundEvent>>()
    };
    let created = events(
        100,
        "conversation.created",
        &|i| json!({"conversation_id": format!("c{i}"), "visitor_id": format!("v{i}")}),
    );
    let closed = events(
        100 + n,
        "conversation.closed",
        &|i| json!({"conversation_id": format!("c{i}")}),
    );
    let before = used_memory(&store).await;
    let keys_before = by_key(config, &store, &project).await;
    apply_all(&store, &created, batch).await;
    let open = used_memory(&store).await;
    let keys_open = by_key(config, &store, &project).await;
    apply_all(&store, &closed, batch).await;
    let done = used_memory(&store).await;
    let keys_closed = by_key(config, &store, &project).await;
    forget_project(config, &tag).await;

    let grown = |after: &[(String, f64)], name: &str| {
        let at = |list: &[(String, f64)]| {
            list.iter()
                .filter(|(k, _)| k == name)
                .map(|(_, b)| *b)
                .sum::<f64>()
        };
        (at(after) - at(&keys_before)) / n as f64
    };
    let mut names: Vec<String> = keys_open
        .iter()
        .chain(&keys_closed)
        .map(|(k, _)| k.clone())
        .collect();
    names.sort();
    names.dedup();
    let mut keys: Vec<(String, f64, f64)> = names
        .iter()
        .map(|name| {
            (
                name.clone(),
                grown(&keys_open, name),
                grown(&keys_closed, name),
            )
        })
        .filter(|(_, o, c)| o.abs() >= 0.5 || c.abs() >= 0.5)
        .collect();
    keys.sort_by(|a, b| (b.1 + b.2).total_cmp(&(a.1 + a.2)));
    Measured {
        per_open: (open - before) / n as f64,
        per_closed: (done - before) / n as f64,
        keys,
    }
}

/// Part (m): both store layouts, one after the other.
pub async fn memory(flags: &Flags, report: &mut Report) {
    let n: u64 = if flags.quick { 20_000 } else { 100_000 };
    let config = Config::default();
    let original = measure(&config, StoreLayout::Original, n).await;
    let compact = measure(&config, StoreLayout::Compact, n).await;

    let met = |bytes: f64, target: f64| if bytes <= target { "yes" } else { "no" };
    report.line("## (m) Redis memory per conversation\n");
    report.line(format!("{n} conversations applied straight through the store (batches of {}, their outputs confirmed after each batch as a worker does once the broker confirms them), each created (and assigned: {} agents online, each taking at most 10, as a team holds them), then each closed; `used_memory` (`INFO memory`) before, after the creations and after the closings, over {n}; once in store layout 1 (the default, which every release reads) and once in layout 2 (`SWITCHBOARD_STORE_LAYOUT=2`: records as MessagePack, each agent's load in a key of its own, the visitors spread over small buckets), each in a project of its own. With the default retention (event ids {} days, closed conversations {} days) everything below stays until it expires. Targets: {OPEN_TARGET:.0} B open, {CLOSED_TARGET:.0} B closed.\n", config.batch_size, n / 10, config.dedupe_ttl_seconds / 86400, config.closed_retention_seconds / 86400));
    report.line(format!(
        "| bytes per conversation | layout 1 | layout 2 | target | met (layout 2) |\n|---|---|---|---|---|\n| open | {:.0} | {:.0} | {OPEN_TARGET:.0} | {} |\n| closed, still remembered (its 2 events' records included) | {:.0} | {:.0} | {CLOSED_TARGET:.0} | {} |\n",
        original.per_open, compact.per_open, met(compact.per_open, OPEN_TARGET),
        original.per_closed, compact.per_closed, met(compact.per_closed, CLOSED_TARGET),
    ));
    report.line("By key (`MEMORY USAGE … SAMPLES 0`, growth over the run / conversations), bytes per conversation:\n");
    report.line("| key | open, layout 1 | closed, layout 1 | open, layout 2 | closed, layout 2 |\n|---|---|---|---|---|");
    let of = |measured: &Measured, name: &str| {
        measured
            .keys
            .iter()
            .find(|(k, _, _)| k == name)
            .map_or((0.0, 0.0), |(_, o, c)| (*o, *c))
    };
    let mut names: Vec<&str> = original.keys.iter().map(|(k, _, _)| k.as_str()).collect();
    for (k, _, _) in &compact.keys {
        if !names.contains(&k.as_str()) {
            names.push(k);
        }
    }
    let mut sums = [0.0; 4];
    for name in names {
        let (jo, jc) = of(&original, name);
        let (mo, mc) = of(&compact, name);
        for (sum, value) in sums.iter_mut().zip([jo, jc, mo, mc]) {
            *sum += value;
        }
        report.line(format!(
            "| `{name}` | {jo:.0} | {jc:.0} | {mo:.0} | {mc:.0} |"
        ));
    }
    report.line(format!(
        "| sum of the keys | {:.0} | {:.0} | {:.0} | {:.0} |\n",
        sums[0], sums[1], sums[2], sums[3]
    ));
    report.bars(
        "(m) Redis bytes per conversation (targets 300 / 200)",
        "B",
        [
            ("open, layout 1", original.per_open),
            ("closed, layout 1", original.per_closed),
            ("open, layout 2", compact.per_open),
            ("closed, layout 2", compact.per_closed),
        ],
    );
}
