//! The interface between the worker and the Redis function library, declared once.
//!
//! Redis passes a function its KEYS and ARGV by position. Writing those positions by hand on
//! both sides (and the reply codes) is how the two drift apart, so they are declared here only:
//! the Rust side builds its calls from these lists, and [`lua_binding`] writes the same lists
//! into the library as Lua tables (see `script.rs`), through which the Lua code reads its keys
//! and arguments by name (`K.convs`, `ARGV_AT.now`). A key's name and documentation live here
//! too, whether the call declares it in KEYS or the library builds it (see [`DECLARED_KEYS`]).

use std::fmt::Write;

/// One key of a project that the library reads or writes.
pub struct ProjectKey {
    /// The name the Lua code binds it to (`K.<name>`).
    pub name: &'static str,
    /// What follows the project prefix `sb:{<project>}:` in the key's name.
    pub suffix: &'static str,
    /// What it holds.
    pub doc: &'static str,
}

const fn key(name: &'static str, suffix: &'static str, doc: &'static str) -> ProjectKey {
    ProjectKey { name, suffix, doc }
}

/// The project's keys. Every one carries the project's hash tag, so a call stays on one cluster
/// slot.
pub const PROJECT_KEYS: &[ProjectKey] = &[
    key(
        "settings",
        "settings",
        "string: the project's settings, JSON (merge-patched)",
    ),
    key(
        "agents",
        "agents",
        "hash: agent id -> agent configuration, JSON",
    ),
    key(
        "status",
        "status",
        "hash: agent id -> online | busy | offline",
    ),
    key(
        "convs",
        "convs",
        "hash: conversation id -> conversation record, JSON",
    ),
    key(
        "owned",
        "owned",
        "zset: \"agent|conversation\" for every open assignment that counts (not inactive; \
         also a closed one in its wrap-up) (score 0, by lex); an agent's load is the count of \
         its members, so it cannot drift",
    ),
    key(
        "waiting",
        "waiting",
        "zset: every waiting conversation, \"<arrival, 16 digits>|conversation\", score = \
         -priority",
    ),
    key(
        "by_load",
        "pool:load",
        "zset: the base pool's eligible agents, score = level bucket * 1e11 + open \
         conversations + a random fraction below 1 (once loads are kept per agent: open \
         conversations * 1024 + a random whole number below 1024)",
    ),
    key(
        "by_order",
        "pool:order",
        "zset: the base pool's eligible agents, score = level bucket * 1e11 + round-robin \
         position",
    ),
    key(
        "by_pass",
        "pool:pass:1001",
        "zset: the base pool's eligible agents outside the precedence levels, score = \
         weighted-fair virtual pass (each level has its own \"pool:pass:<level>\")",
    ),
    key(
        "meta",
        "meta",
        "hash: counters (agent_seq, arrival_seq, vtime, day, pool_count, events_generation, ...)",
    ),
    key(
        "closing",
        "closing",
        "list: \"<conversation>|<ms>\" at each closing, oldest first; its head is forgotten \
         after the closed retention",
    ),
    key(
        "closed",
        "closed",
        "zset: conversation id -> closing time, ms: an earlier release's, forgotten until empty",
    ),
    key(
        "passes",
        "passes",
        "hash: agent id -> virtual pass, kept while out of the pool",
    ),
    key(
        "visitors",
        "visitors",
        "hash: visitor id -> \"<agent>|<minute>\": the agent that last served the visitor, and \
         when (minutes since the epoch; an earlier release wrote the agent alone)",
    ),
    key(
        "served",
        "visitors_served",
        "list: \"<visitor>|<minute>\" each time a visitor is served, oldest first; its head is \
         forgotten after visitor_memory_days",
    ),
    key(
        "visitor_seen",
        "visitor_seen",
        "zset: visitor id -> when that agent last served, ms: an earlier release's, read and \
         forgotten until empty",
    ),
    key(
        "held",
        "held",
        "zset: conversations offered (broadcast) or awaiting an external decision (custom)",
    ),
    key(
        "offers",
        "offers",
        "zset: \"agent|conversation\" for every standing offer",
    ),
    key(
        "online",
        "online",
        "zset: the base pool's agents that are online whatever their load, score = level bucket",
    ),
    key(
        "base_waiting",
        "base_waiting",
        "zset: the base pool's waiting conversations once a requirement pool exists (until \
         then `waiting` serves as the base pool's queue)",
    ),
    key(
        "pools",
        "pools",
        "hash: requirement pool id -> requirement (skills, channels), JSON; each pool has keys \
         rq:<id>:{load,order,pass,online,waiting}",
    ),
    key(
        "memberships",
        "memberships",
        "hash: agent id -> ids of the requirement pools it is in",
    ),
    key(
        "daily",
        "daily",
        "hash: agent id -> assignments today (the project's local day)",
    ),
    key(
        "waited",
        "waited",
        "zset: every waiting conversation -> when it started waiting, ms (the longest wait)",
    ),
    key(
        "versions",
        "versions",
        "hash: the order of each thing that is not a conversation, \"<time us>:<event digest>\" \
         of the last event applied to it: s|<agent> (status), f|<agent>|<field>, u|<agent> \
         (last upsert), r|<agent> (removal), c|<setting>, n|<agent> (get-next claims)",
    ),
    key(
        "inactive",
        "inactive",
        "zset: \"agent|conversation\" for every open conversation that stopped counting in its \
         agent's load (inactive_after_seconds), score = since when, ms",
    ),
    key(
        "channel_owned",
        "channel_owned",
        "zset: \"agent|channel|conversation\" for the members of `owned` whose channel their \
         agent has a `capacity` for (score 0, by lex): the load per channel",
    ),
    key(
        "last_assigned",
        "last_assigned",
        "hash: agent id -> the number of its last assignment (tie_break longest_idle)",
    ),
    key(
        "missed",
        "missed",
        "hash: agent id -> automatic assignments in a row moved away by the reply timeout \
         (away_after_missed)",
    ),
    key(
        "events",
        "events:<generation>",
        "hash: event digest -> outputs recorded for replay until the broker confirmed them, then \
         \"\" (seen); one key per generation of `dedupe TTL`, expiring after two",
    ),
    key(
        "previous_events",
        "events:<generation - 1>",
        "hash: the previous generation's events",
    ),
    key(
        "migration_guard",
        "migration_guard",
        "never written: declared by every call so that Redis refuses it (TRYAGAIN) while the \
         project's cluster slot moves to another node (see DECLARED_KEYS)",
    ),
];

/// The project keys an `apply` (or `explain`) call declares, in the order of its KEYS; the
/// records earlier releases kept for the batch's redelivered events follow them. The library
/// builds every other project key's name from the prefix of the first, as it already does for
/// requirement pools and agents' loads: all of them carry the project's hash tag, so they are
/// on the declared keys' cluster slot. The generation keys change name every generation, so
/// the worker names them.
///
/// Declaring all 31 cost Redis about 29 thousand instructions per call (each parsed, its slot
/// checked, and made a Lua string): 6% of a creation that has a call to itself (part (i) of
/// the benchmark), and below a backlog calls hold only a few events.
///
/// Keys a call does not declare are safe while the project's slot stays on one node. While a
/// cluster moves it to another (resharding: `CLUSTER SETSLOT … MIGRATING`, then `MIGRATE` key
/// by key), a call that Redis starts on the old node finds some keys gone, and Redis stops it at
/// the first command on one of them ("Script attempted to access a non local key in a cluster
/// node"), after the writes it made before. So every call also declares `migration_guard`, a
/// key that is never written. For a call with a missing key in a slot being moved, Redis
/// answers TRYAGAIN before the call starts (on the old node while some declared key is still
/// there, or on the new one it redirects to), so no call starts until the move is over. The
/// worker holds and retries TRYAGAIN like any outage. Outside a move a missing key changes
/// nothing.
pub const DECLARED_KEYS: &[&str] = &["settings", "events", "previous_events", "migration_guard"];

/// In store layout 2 each agent's load is a sorted set of its own, named the project's prefix,
/// this, and the agent's id (built inside the library too, from the prefix: see load.lua).
pub const AGENT_LOAD_KEY_PREFIX: &str = "owned:";

/// The `meta` field that marks ("1") a project whose loads are kept in its agents' own keys:
/// every worker of this release, and the read API, count that project per agent.
pub const OWNED_BY_AGENT_FIELD: &str = "owned_by_agent";

/// The `meta` field of a project whose visitors are spread over buckets (store layout 2, see
/// buckets.lua): "<buckets>|<visitors>|<next swept>|<round start, ms>". Bucket `n` is the
/// `visitors` key's name, ':' and `n` (built inside the library too).
pub const VISITOR_BUCKETS_FIELD: &str = "visitor_buckets";

/// How an event's record ends when, once its outputs are confirmed, it stays as "seen" (an
/// event no version of anything remembers: see apply.lua) rather than going.
pub const STAYS_SEEN_MARK: &str = ",\"k\":1}";

/// Leads a confirmed digest in ARGV when its record stays as seen: the worker, which had the
/// record in its reply, says so, and the library reads only those records before writing them.
pub const STAYS_SEEN_CONFIRMATION: char = '+';

/// The arguments every call shares, in the order of ARGV.
pub const SHARED_ARGS: &[(&str, &str)] = &[
    ("now", "the worker's time, ms since the epoch"),
    (
        "seed",
        "a random seed (the batch's first event; the next ones count up)",
    ),
    ("closed_retention", "closed-conversation retention, ms"),
    (
        "timezone",
        "the time zone the worker assumed for the project",
    ),
    (
        "today",
        "today's date in that zone, YYYY-MM-DD (daily limits count per local day)",
    ),
    (
        "next_midnight",
        "the next local midnight in that zone, ms since the epoch",
    ),
    (
        "generation",
        "the current generation of event records (now / dedupe TTL)",
    ),
    (
        "generation_start",
        "when the current generation began, us since the epoch",
    ),
    (
        "generation_ttl",
        "how long a generation's key lives, s (two generations)",
    ),
    (
        "store_layout",
        "what this worker writes: 1 (what every release reads) or 2 (records as MessagePack, \
         each agent's load in a key of its own; read from this release on)",
    ),
    (
        "confirmed",
        "how many digests follow the batch's events: events of the current generation whose \
         outputs the broker has confirmed since (`apply` only; 0 elsewhere), each marked with a \
         leading STAYS_SEEN_CONFIRMATION when its record stays as seen",
    ),
];

/// The arguments of each event of the batch, in order, after the shared ones.
pub const EVENT_ARGS: &[(&str, &str)] = &[
    ("type", "the event type"),
    ("data", "its data, JSON (checked by the worker)"),
    (
        "time",
        "its `time`, us since the epoch, or \"\" when it has none",
    ),
    ("digest", "a digest of its id (dedupe and versions)"),
    (
        "legacy",
        "the index in KEYS of the record an earlier release kept for it (redelivered events \
         only), or 0",
    ),
];

/// What `apply` answers for one event: a code and a text, each event's two in turn in one flat
/// list (`code, text, code, text...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum ReplyCode {
    /// Applied now; text is the record of its outputs.
    Applied = 0,
    /// Applied before and not confirmed since: text is the record to publish again.
    Replayed = 1,
    /// The worker assumed another time zone for the project: text names the right one; this
    /// event and the rest of the batch were not applied.
    WrongTimezone = 2,
    /// Seen before, its outputs confirmed: nothing to publish.
    Duplicate = 3,
    /// Older than the state it would change: nothing changed, nothing to publish.
    Stale = 4,
    /// The library failed on this event (a bug): text is the error; the rest of the batch
    /// was not applied.
    Failed = 5,
}

impl ReplyCode {
    pub const ALL: [ReplyCode; 6] = [
        ReplyCode::Applied,
        ReplyCode::Replayed,
        ReplyCode::WrongTimezone,
        ReplyCode::Duplicate,
        ReplyCode::Stale,
        ReplyCode::Failed,
    ];

    pub fn from_code(code: i64) -> Option<ReplyCode> {
        ReplyCode::ALL.into_iter().find(|c| *c as i64 == code)
    }

    /// The name the Lua code uses (`REPLY.<name>`).
    pub fn lua_name(self) -> &'static str {
        match self {
            ReplyCode::Applied => "applied",
            ReplyCode::Replayed => "replayed",
            ReplyCode::WrongTimezone => "wrong_timezone",
            ReplyCode::Duplicate => "duplicate",
            ReplyCode::Stale => "stale",
            ReplyCode::Failed => "failed",
        }
    }
}

/// A project key by name.
pub fn project_key_named(name: &str) -> &'static ProjectKey {
    PROJECT_KEYS
        .iter()
        .find(|k| k.name == name)
        .unwrap_or_else(|| panic!("no project key named {name}"))
}

/// The position (1-based, as Lua counts) of a declared key in KEYS.
pub fn declared_position(name: &str) -> usize {
    DECLARED_KEYS
        .iter()
        .position(|k| *k == name)
        .unwrap_or_else(|| panic!("{name} is not a declared key"))
        + 1
}

/// The Lua tables the library reads its interface from, with each key's documentation.
pub fn lua_binding() -> String {
    let mut lua = String::from(
        "-- Generated from src/store/interface.rs: the KEYS and ARGV of `apply`, and its reply \
         codes.\n-- KEYS (sb:{<project>}:<suffix>), then the records earlier releases kept for \
         redelivered events:\n",
    );
    let declared = DECLARED_KEYS.iter().map(|name| project_key_named(name));
    for (i, key) in declared.enumerate() {
        let _ = writeln!(
            lua,
            "--   {:<2} {:<16} {}: {}",
            i + 1,
            key.name,
            key.suffix,
            key.doc
        );
    }
    let built = || {
        PROJECT_KEYS
            .iter()
            .filter(|key| !DECLARED_KEYS.contains(&key.name))
    };
    lua.push_str("-- The project's other keys, named sb:{<project>}:<suffix> by the library:\n");
    for key in built() {
        let _ = writeln!(lua, "--   {:<16} {}: {}", key.name, key.suffix, key.doc);
    }
    lua.push_str("local KEY_AT = {");
    for (i, name) in DECLARED_KEYS.iter().enumerate() {
        let _ = write!(lua, " {name} = {},", i + 1);
    }
    lua.push_str(" }\nlocal KEY_SUFFIX = {");
    for key in built() {
        let _ = write!(lua, " {} = '{}',", key.name, key.suffix);
    }
    lua.push_str(" }\n-- ARGV shared by the batch:\n");
    for (i, (name, doc)) in SHARED_ARGS.iter().enumerate() {
        let _ = writeln!(lua, "--   {:<2} {name}: {doc}", i + 1);
    }
    lua.push_str("local ARGV_AT = {");
    for (i, (name, _)) in SHARED_ARGS.iter().enumerate() {
        let _ = write!(lua, " {name} = {},", i + 1);
    }
    lua.push_str(" }\n-- then, for each event of the batch:\n");
    for (i, (name, doc)) in EVENT_ARGS.iter().enumerate() {
        let _ = writeln!(lua, "--   +{i} {name}: {doc}");
    }
    lua.push_str("local EVENT_ARG_AT = {");
    for (i, (name, _)) in EVENT_ARGS.iter().enumerate() {
        let _ = write!(lua, " {name} = {i},");
    }
    lua.push_str(" }\nlocal REPLY = {");
    for code in ReplyCode::ALL {
        let _ = write!(lua, " {} = {},", code.lua_name(), code as i64);
    }
    lua.push_str(" }\n");
    let _ = writeln!(
        lua,
        "local DECLARED_KEY_COUNT, SHARED_ARG_COUNT, EVENT_ARG_COUNT = {}, {}, {}",
        DECLARED_KEYS.len(),
        SHARED_ARGS.len(),
        EVENT_ARGS.len()
    );
    let _ = writeln!(
        lua,
        "local AGENT_LOAD_KEY_PREFIX, OWNED_BY_AGENT_FIELD, VISITOR_BUCKETS_FIELD = \
         '{AGENT_LOAD_KEY_PREFIX}', '{OWNED_BY_AGENT_FIELD}', '{VISITOR_BUCKETS_FIELD}'"
    );
    // The prefix as its byte: the library compares it with string.byte, allocating nothing.
    let _ = writeln!(
        lua,
        "local STAYS_SEEN_MARK, STAYS_SEEN_CONFIRMATION_BYTE = '{STAYS_SEEN_MARK}', {}",
        STAYS_SEEN_CONFIRMATION as u8
    );
    lua
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_suffixes_are_distinct() {
        let mut names: Vec<_> = PROJECT_KEYS.iter().map(|k| k.name).collect();
        let mut suffixes: Vec<_> = PROJECT_KEYS.iter().map(|k| k.suffix).collect();
        names.sort();
        names.dedup();
        suffixes.sort();
        suffixes.dedup();
        assert_eq!(names.len(), PROJECT_KEYS.len());
        assert_eq!(suffixes.len(), PROJECT_KEYS.len());
    }

    #[test]
    fn reply_codes_round_trip() {
        for code in ReplyCode::ALL {
            assert_eq!(ReplyCode::from_code(code as i64), Some(code));
        }
        assert_eq!(ReplyCode::from_code(99), None);
    }

    #[test]
    fn the_declared_keys_name_the_prefix_and_every_other_key_has_a_fixed_name() {
        // The library takes the project's prefix from KEYS[1], the settings key.
        assert_eq!(DECLARED_KEYS[0], "settings");
        assert_eq!(project_key_named("settings").suffix, "settings");
        for key in PROJECT_KEYS {
            if !DECLARED_KEYS.contains(&key.name) {
                assert!(!key.suffix.contains('<'), "{} must be declared", key.name);
            }
        }
    }

    #[test]
    fn the_binding_lists_every_key_and_argument() {
        let lua = lua_binding();
        for key in PROJECT_KEYS {
            let declared = DECLARED_KEYS.contains(&key.name);
            assert_eq!(
                lua.contains(&format!(" {} = '{}',", key.name, key.suffix)),
                !declared,
                "{}",
                key.name
            );
            assert!(lua.contains(&format!(" {} = ", key.name)));
        }
        assert!(lua.contains(
            "local KEY_AT = { settings = 1, events = 2, previous_events = 3, migration_guard = 4, }"
        ));
        assert!(lua.contains("now = 1,"));
        assert!(lua.contains("type = 0,"));
        assert!(lua.contains("stale = 4,"));
    }
}
