//! Part (i): the instructions Redis runs per creation, counted by valgrind's callgrind in a
//! private `redis-server`, and where they go.
//!
//! Every other part times CPU on a shared machine, where one run can come out a third off the
//! next: comparing two versions of the library there takes many alternating rounds, and a 5%
//! change is lost in the noise. An instruction count is the same on every run (three runs of
//! one build agree within 0.5%), so a change to the Lua can be judged in one run of a few
//! seconds. The count is of Redis alone, applying creations straight through the store in
//! batches of the worker's size, as part (o)'s drain sends them, each batch's confirmations
//! riding along with the next as in a worker under load: the decision's own cost, without the
//! broker. Then once more one creation per call, as they come while the queue is not backed
//! up: what a call costs whatever its size is then paid by each creation alone.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use switchboard::clock::{Clock, SystemClock};
use switchboard::config::{Config, StoreLayout};
use switchboard::store::{Store, StoreOptions};
use tokio::process::{Child, Command};

use crate::backlog::{conversation_data, event, numbering, setup_with, Features};
use crate::isolation::{free_port, redis_connection};
use crate::outside::{redis_stats, team_of, RedisStats, TEAM_SIZE as TEAM};
use crate::redis_cost::decoded;
use crate::relay;
use crate::report::Report;

/// Creations applied before counting starts (the library loaded, the sets past their first
/// growth), and creations counted: 8,000, where 2,000 held one or two cycles of Lua's garbage
/// collector, so that a change of when they fell moved a count by up to 2 thousand, as much as
/// many a change measured.
const WARM_UP: u64 = 500;
const COUNTED: u64 = 8_000;

/// Besides the team of (o) (`TEAM`), a team of a size many support teams have: under the 128
/// entries up to which Redis keeps a sorted set or a hash compact (a listpack, read from its
/// start on every lookup and insert), unless the library keeps it otherwise.
const LARGE_TEAM: u64 = 100;

/// Functions whose inclusive count the report breaks out. Debian's stripped redis-server names
/// four: the commands the library runs (`scriptCall`), the text ↔ number conversions (a Lua
/// number given to `redis.call` is printed with "%.17g", a sorted set's score is parsed back,
/// and read again from a listpack's text on every scan) and the whole call. A build with
/// symbols (`benches/redis-with-symbols.sh`, first in PATH) names the others too.
const PARTS: [(&str, &str); 9] = [
    ("scriptCall", "the commands the library runs"),
    (
        "luaRedisGenericCommand",
        "the same with their passage between Lua and Redis (arguments and replies converted)",
    ),
    (
        "____strtod_l_internal",
        "text → number (`strtod`: scores, `tonumber`, JSON)",
    ),
    (
        "__vfprintf_internal",
        "number → text (`printf`: `redis.call` arguments, JSON, `tostring`)",
    ),
    ("json_encode", "JSON written (cjson: records, outputs)"),
    (
        "json_decode",
        "JSON read (cjson: the events' data, records, agents' configurations)",
    ),
    (
        "luaC_step",
        "Lua's garbage collector (when allocations trigger it)",
    ),
    ("luaCreateArray", "KEYS and ARGV made into Lua tables"),
    ("luaCallFunction", "the whole call (Lua and the commands)"),
];

/// Runs part (i), or says why it cannot (valgrind or redis-server missing).
pub async fn instructions(report: &mut Report) {
    report.line("## (i) Redis instructions per creation (callgrind)\n");
    let counted = match count().await {
        Ok(counted) => counted,
        Err(why) => {
            eprintln!("(i) not run: {why}");
            report.line(format!("Not run: {why}\n"));
            return;
        }
    };
    report.line(format!(
        "A private `redis-server` under valgrind's callgrind; the team of (o) ({TEAM} agents), {WARM_UP} creations to warm up, then {COUNTED} `conversation.created` applied straight through the store in batches of {} (one call at a time, each carrying the confirmations of the batch before, as a worker under load does), counted from the first to the last. Instructions are the same on every run, so one run compares two versions of the library where CPU times on this machine need many alternating rounds.\n",
        counted.batch
    ));
    report.line(format!(
        "**{:.1} thousand instructions per creation** in Redis, against the bare relay's {:.0} thousand per event (its script, one call per event, on the same server): {:.1}×. The worker's library ran {:.1} commands per creation, in {:.3} calls. Callgrind counts Redis's own instructions, not the kernel's work for each call (reading and writing its socket), which the relay pays per event and the worker per batch: this ratio is larger than the ratio of CPU times in (o).\n",
        counted.total / 1000.0,
        counted.relay / 1000.0,
        counted.total / counted.relay,
        counted.commands,
        counted.calls
    ));
    if let Some(us) = report.drain_redis_us {
        let per_us = counted.total / 1000.0 / us;
        report.line(format!(
            "In (o)'s median drain of this run Redis spent {us:.1} µs of CPU per creation: about {per_us:.1} thousand of these instructions per µs on this host (the kernel's share of each call included), so 25 µs per creation (the README's target) is about {:.0} thousand instructions here. Hosts differ by up to 2× in this pace: compare counts, not µs, across hosts.\n",
            25.0 * per_us
        ));
    }
    report.line(format!(
        "In store layout 2 (`SWITCHBOARD_STORE_LAYOUT=2`, another project on the same server): {:.1} thousand per creation ({:.2}× layout 1's).\n",
        counted.compact / 1000.0,
        counted.compact / counted.total
    ));
    report.line(format!(
        "In a team of {LARGE_TEAM} agents (layout 1, another project; Redis keeps a sorted set or hash of up to 128 short entries as a listpack unless told otherwise): {:.1} thousand per creation ({:.2}× the team of {TEAM}'s).\n",
        counted.large_team / 1000.0,
        counted.large_team / counted.total
    ));
    report.line(format!(
        "In a project using every routing feature (part (c)'s: a rule asking for skill levels and ordering by them, agents with skills, channels and a capacity per channel, conversations with a channel and a language, longest-idle ties, inactivity, wrap-up, a reply timeout and auto-away; layout 1, another project): {:.1} thousand per creation ({:.2}× the plain project's).\n",
        counted.every_feature / 1000.0,
        counted.every_feature / counted.total
    ));
    report.line(
        "| of which (inclusive, may overlap) | thousand per creation | share |\n|---|---|---|",
    );
    for (name, what) in PARTS {
        match counted.parts.iter().find(|(n, _)| n == name) {
            Some((_, ir)) => report.line(format!(
                "| {what} | {:.0} | {:.0}% |",
                ir / 1000.0,
                ir / counted.total * 100.0
            )),
            None => report.line(format!(
                "| {what} | not named in this build (`benches/redis-with-symbols.sh` makes one that names it) | |"
            )),
        }
    }
    report.line("");
    report.line(format!(
        "**One creation per call** (as they come while the work queue is not backed up: from outside at 1,000 or 2,000 ev/s, batches average 2 to 6 events): {:.1} thousand per creation ({:.2}× a batch of {}'s), {:.1} commands. What a call costs whatever its size (the call itself, the counters and caches read again, the records written) is paid by each such creation alone.\n",
        counted.alone / 1000.0,
        counted.alone / counted.total,
        counted.batch,
        counted.alone_commands
    ));
    report.bars(
        "(i) Redis instructions per creation (thousands)",
        "k",
        [
            ("worker".to_string(), counted.total / 1000.0),
            ("worker, one per call".to_string(), counted.alone / 1000.0),
            (
                format!("worker, team of {LARGE_TEAM}"),
                counted.large_team / 1000.0,
            ),
            (
                "worker, every feature".to_string(),
                counted.every_feature / 1000.0,
            ),
            ("bare relay".to_string(), counted.relay / 1000.0),
        ],
    );
}

struct Counted {
    batch: usize,
    /// Instructions per creation.
    total: f64,
    /// The bare relay's instructions per event (its script, one call per event).
    relay: f64,
    /// Instructions per creation in store layout 2.
    compact: f64,
    /// Instructions per creation in a project using every routing feature (layout 1).
    every_feature: f64,
    /// Instructions per creation in a team of LARGE_TEAM agents (layout 1).
    large_team: f64,
    /// Instructions per creation applied one per call (layout 1), and the commands they ran.
    alone: f64,
    alone_commands: f64,
    /// Inclusive instructions per creation of the functions of `PARTS` found.
    parts: Vec<(String, f64)>,
    /// Commands the library ran, and FCALLs, per creation.
    commands: f64,
    calls: f64,
}

/// A `redis-server` under callgrind, killed when dropped.
struct Profiled {
    child: Child,
    pid: u32,
    dir: PathBuf,
    port: u16,
}

impl Drop for Profiled {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // `BENCH_KEEP_CALLGRIND` keeps the dumps (out.1 layout 1, out.2 layout 2, out.3 layout 1
        // one creation per call, out.4 the relay, out.5 every routing feature) for
        // `callgrind_annotate`: with a
        // `redis-server` built with symbols first in PATH (`benches/redis-with-symbols.sh`),
        // they show where the instructions go inside Lua and Redis.
        if std::env::var_os("BENCH_KEEP_CALLGRIND").is_some() {
            eprintln!("(i) callgrind dumps kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn count() -> Result<Counted, String> {
    for tool in ["valgrind", "callgrind_control", "callgrind_annotate"] {
        if which(tool).is_none() {
            return Err(format!(
                "`{tool}` is not installed (Debian: `apt install valgrind`)"
            ));
        }
    }
    let server = start().await?;
    let config = Config {
        redis_url: format!("redis://127.0.0.1:{}", server.port).as_str().into(),
        ..Config::default()
    };
    let store = Store::connect(
        std::slice::from_ref(&config.redis_url),
        StoreOptions::from_config(&config),
    )
    .await
    .map_err(|e| format!("the profiled redis-server: {e}"))?;
    let mut redis = redis_connection(&config).await;
    let batch: usize = config.batch_size.into();
    let (before, after) = count_creations(
        &store,
        &mut redis,
        "instructions",
        (Features::Plain, TEAM),
        batch,
        server.pid,
    )
    .await?;
    let dump = wait_for_dump(&server.dir, 1).await?;
    // The same in store layout 2, in a project of its own.
    let compact = Store::connect(
        std::slice::from_ref(&config.redis_url),
        StoreOptions {
            store_layout: StoreLayout::Compact,
            ..StoreOptions::from_config(&config)
        },
    )
    .await
    .map_err(|e| format!("the profiled redis-server: {e}"))?;
    count_creations(
        &compact,
        &mut redis,
        "instructions-compact",
        (Features::Plain, TEAM),
        batch,
        server.pid,
    )
    .await?;
    let compact_dump = wait_for_dump(&server.dir, 2).await?;
    // Layout 1 again, one creation per call, in a project of its own.
    let (alone_before, alone_after) = count_creations(
        &store,
        &mut redis,
        "instructions-alone",
        (Features::Plain, TEAM),
        1,
        server.pid,
    )
    .await?;
    let alone_dump = wait_for_dump(&server.dir, 3).await?;
    // The bare relay's script on the same bodies, one call each, as the relay runs it.
    let bodies: Vec<Vec<u8>> = (0..COUNTED)
        .map(|i| format!("creation {i}").into_bytes())
        .collect();
    let script = redis::Script::new(relay::SCRIPT);
    control(&["-z"], server.pid).await?;
    for body in &bodies {
        let _: i64 = script
            .key("relay")
            .key("relay:last")
            .arg(&body[..])
            .invoke_async(&mut redis)
            .await
            .map_err(|e| e.to_string())?;
    }
    control(&["-d"], server.pid).await?;
    let relay_dump = wait_for_dump(&server.dir, 4).await?;
    // Layout 1 in a project using every routing feature, as part (c)'s.
    count_creations(
        &store,
        &mut redis,
        "instructions-every",
        (Features::Every, TEAM),
        batch,
        server.pid,
    )
    .await?;
    let every_dump = wait_for_dump(&server.dir, 5).await?;
    // Layout 1 again, in a team of LARGE_TEAM agents, in a project of its own.
    count_creations(
        &store,
        &mut redis,
        "instructions-large",
        (Features::Plain, LARGE_TEAM),
        batch,
        server.pid,
    )
    .await?;
    let large_dump = wait_for_dump(&server.dir, 6).await?;
    let _: Result<(), _> = redis::cmd("SHUTDOWN")
        .arg("NOSAVE")
        .query_async(&mut redis)
        .await;
    // Read before the server goes: its folder goes with it.
    let (total, parts) = annotate(&dump).await?;
    let (relay_total, _) = annotate(&relay_dump).await?;
    let (compact_total, _) = annotate(&compact_dump).await?;
    let (alone_total, _) = annotate(&alone_dump).await?;
    let (every_total, _) = annotate(&every_dump).await?;
    let (large_total, _) = annotate(&large_dump).await?;
    drop(server);

    let per = |ir: f64| ir / COUNTED as f64;
    Ok(Counted {
        batch,
        total: per(total),
        relay: per(relay_total),
        compact: per(compact_total),
        every_feature: per(every_total),
        large_team: per(large_total),
        alone: per(alone_total),
        parts: parts.into_iter().map(|(n, ir)| (n, per(ir))).collect(),
        commands: commands_run(&before, &after) / COUNTED as f64,
        alone_commands: commands_run(&alone_before, &alone_after) / COUNTED as f64,
        calls: calls_of(&before, &after, "fcall") / COUNTED as f64,
    })
}

/// How many times Redis ran `command` between two readings of its statistics.
fn calls_of(before: &RedisStats, after: &RedisStats, command: &str) -> f64 {
    let calls = |s: &RedisStats| s.commands.get(command).map_or(0.0, |c| c.0);
    calls(after) - calls(before)
}

/// The commands the library ran between two readings (not those the benchmark sent).
fn commands_run(before: &RedisStats, after: &RedisStats) -> f64 {
    let sent = ["fcall", "info"];
    after
        .commands
        .keys()
        .filter(|name| !sent.contains(&name.as_str()))
        .map(|name| calls_of(before, after, name))
        .sum()
}

/// Sets up `project` with `agents` agents (a team as (o)'s, or as part (c)'s project using
/// every feature), applies the warm-up creations, then counts (callgrind zeroed before, dumped
/// after) the creations counted, applied in batches of `batch` as a worker does. Returns
/// Redis's command statistics before and after the counted creations.
async fn count_creations(
    store: &Store,
    redis: &mut MultiplexedConnection,
    project: &str,
    (features, agents): (Features, u64),
    batch: usize,
    pid: u32,
) -> Result<(RedisStats, RedisStats), String> {
    let setup = match features {
        Features::Plain => team_of(project, agents),
        Features::Every => setup_with(project, agents as usize, Features::Every, numbering()),
    };
    for setup in decoded(&setup) {
        store.apply(&setup, SystemClock.now_ms()).await.unwrap();
    }
    let creations = |from: u64, to: u64| {
        let bodies: Vec<Vec<u8>> = (from..to)
            .map(|i| {
                event(
                    project,
                    100 + i,
                    "conversation.created",
                    conversation_data(i as usize, features),
                )
            })
            .collect();
        decoded(&bodies)
    };
    let apply = |events: Vec<switchboard::contract::InboundEvent>| async move {
        for chunk in events.chunks(batch) {
            let delivered: Vec<_> = chunk.iter().map(Into::into).collect();
            let applied = store
                .apply_batch(&delivered, SystemClock.now_ms())
                .await
                .unwrap();
            // The broker confirmed the outputs: told to Redis with the next call, as a worker
            // under load does.
            for applied in applied.into_iter().map(Result::unwrap) {
                if applied.awaits_confirmation() {
                    store.confirmed_later(&chunk[0].project, applied.record);
                }
            }
        }
    };
    apply(creations(0, WARM_UP)).await;
    let counted_events = creations(WARM_UP, WARM_UP + COUNTED);
    let before = redis_stats(redis).await;
    control(&["-z"], pid).await?;
    apply(counted_events).await;
    control(&["-d"], pid).await?;
    Ok((before, redis_stats(redis).await))
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|path| path.is_file())
    })
}

/// Starts `redis-server` under callgrind on a free port (its counts are zeroed when the
/// counting starts), and waits until it answers.
async fn start() -> Result<Profiled, String> {
    let port = free_port().map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("switchboard-callgrind-{port}"));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let child = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!(
            "--callgrind-out-file={}",
            dir.join("out").display()
        ))
        .args([
            "redis-server",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("valgrind did not start: {e}"))?;
    let pid = child.id().ok_or("valgrind exited at once")?;
    let server = Profiled {
        child,
        pid,
        dir,
        port,
    };
    let url = format!("redis://127.0.0.1:{port}");
    let started = Instant::now();
    loop {
        let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
        if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
            let pong: Result<String, _> = redis::cmd("PING").query_async(&mut connection).await;
            if pong.is_ok() {
                return Ok(server);
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            return Err("redis-server under valgrind did not answer within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn control(args: &[&str], pid: u32) -> Result<(), String> {
    let status = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("callgrind_control {args:?} failed ({status})"));
    }
    Ok(())
}

/// The `n`-th dump (`out.<n>`), once callgrind has written it whole (it ends with its totals).
async fn wait_for_dump(dir: &Path, n: u32) -> Result<PathBuf, String> {
    let dump = dir.join(format!("out.{n}"));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if let Ok(text) = std::fs::read_to_string(&dump) {
            if text.lines().any(|line| line.starts_with("totals:")) {
                return Ok(dump);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("callgrind wrote no dump within 60 s".into())
}

/// The dump's total and the inclusive counts of the functions of `PARTS`.
async fn annotate(dump: &Path) -> Result<(f64, Vec<(String, f64)>), String> {
    let output = Command::new("callgrind_annotate")
        .args(["--inclusive=yes", "--threshold=100"])
        .arg(dump)
        .output()
        .await
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&output.stdout);
    let count = |line: &str| {
        line.split_whitespace()
            .next()
            .and_then(|n| n.replace(',', "").parse::<f64>().ok())
    };
    let total = text
        .lines()
        .find(|line| line.contains("PROGRAM TOTALS"))
        .and_then(count)
        .ok_or_else(|| {
            format!(
                "callgrind_annotate printed no total: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )
        })?;
    let parts = PARTS
        .iter()
        .filter_map(|(name, _)| {
            // "N (p%)  file:function [object]": the first line naming the function (its
            // outermost, recursion-free count).
            let needle = format!(":{name} ");
            text.lines()
                .find(|line| line.contains(&needle))
                .and_then(count)
                .map(|ir| (name.to_string(), ir))
        })
        .collect();
    Ok((total, parts))
}
