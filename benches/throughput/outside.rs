//! Part (o): the drain and the latency as a platform sees them, driven from outside by pika (a
//! client that is not ours), publisher and receiver in separate Python processes
//! (`benches/outside/*.py`), timing the worker and the relays the same way:
//!
//! - drain: a backlog of `conversation.created` (one output each) is in the work queue; the
//!   receiver times from the first event taken off it to the last output in an output queue,
//!   for the bare relay, the worker (1 and 4 Redis connections) and the batched relay, taking
//!   turns round after round; CPU per creation of Redis, RabbitMQ and the consumer process
//!   (from `/proc`) and Redis's own accounting (`INFO cpu`, `INFO commandstats`) over the same
//!   window;
//! - latency: creations published at a fixed rate, p99 publish → output (`conversation.assigned`
//!   for the worker, the relayed copy for the relays), the handlers taking turns, with the CPU
//!   per event of Redis, RabbitMQ and the consumer in each run. Beside the bare relay runs a
//!   loaded relay: the same relay, its script made to spend the Redis CPU per event the worker
//!   spent in the same round, so the two relays split the worker's tail gap into what its Redis
//!   CPU accounts for and the rest.

use std::collections::BTreeMap;
use std::process::Stdio;

use serde_json::{json, Value};
use switchboard::broker::Session;
use switchboard::config::Config;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::backlog::{event, publish_all};
use crate::batched_relay::BatchedRelay;
use crate::cpu::{CpuPerEvents, CpuUse};
use crate::flags::Flags;
use crate::isolation::{cleanup, config, new_tag, redis_connection};
use crate::relay::Relay;
use crate::report::{median, Report};
use crate::workers::Workers;

const SCRIPTS: &str = "benches/outside";

/// What consumes the work queue.
#[derive(Clone, Copy, PartialEq)]
pub enum Handler {
    Relay,
    Batched,
    /// The bare relay with this many turns of [`crate::relay::BUSY_LOOP`] per event.
    Loaded(u32),
    /// A `switchboard run` worker with this many Redis connections
    /// (`SWITCHBOARD_REDIS_CONNECTIONS`).
    Worker(u16),
}

impl Handler {
    fn name(self) -> String {
        match self {
            Handler::Relay => "bare relay".into(),
            Handler::Batched => "batched relay".into(),
            Handler::Loaded(_) => "relay with the worker's Redis CPU".into(),
            Handler::Worker(1) => "worker".into(),
            Handler::Worker(n) => format!("worker, {n} Redis connections"),
        }
    }

    /// The routing key of the output that answers a creation.
    fn output(self) -> &'static str {
        match self {
            Handler::Worker(_) => "conversation.assigned",
            _ => "conversation.created",
        }
    }
}

/// A handler at work; stopped when dropped or by `stop`.
enum Running {
    Relay(Relay),
    Batched(BatchedRelay),
    Worker(Workers),
}

impl Running {
    fn pids(&self) -> Vec<u32> {
        match self {
            Running::Worker(workers) => workers.pids(),
            _ => vec![std::process::id()],
        }
    }

    fn stop(self) {
        match self {
            Running::Relay(relay) => relay.stop(),
            Running::Batched(relay) => relay.stop(),
            Running::Worker(workers) => workers.stop(),
        }
    }
}

/// The Python interpreter (`BENCH_PYTHON`, else `python3`) if it has pika.
fn python() -> Result<String, String> {
    let python = std::env::var("BENCH_PYTHON").unwrap_or_else(|_| "python3".into());
    match std::process::Command::new(&python)
        .args(["-c", "import pika"])
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => Ok(python),
        Ok(_) => Err(format!("part (o) needs pika, which `{python}` cannot import: run `{python} -m pip install -r {SCRIPTS}/requirements.txt` (or set BENCH_PYTHON to an interpreter that has it)")),
        Err(error) => Err(format!("part (o) needs Python 3 with pika; `{python}` did not start ({error}): install it and `pip install -r {SCRIPTS}/requirements.txt`, or set BENCH_PYTHON")),
    }
}

/// How many agents the team of [`team`] has.
pub const TEAM_SIZE: u64 = 10;

/// A team that takes every creation: [`TEAM_SIZE`] agents online, 100,000 conversations each.
pub fn team(project: &str) -> Vec<Vec<u8>> {
    team_of(project, TEAM_SIZE)
}

/// The same with `size` agents.
pub fn team_of(project: &str, size: u64) -> Vec<Vec<u8>> {
    let agents: Vec<Value> = (0..size)
        .map(|i| json!({"agent_id": format!("agent-{i}"), "max_concurrent": 100_000}))
        .collect();
    let mut setup = vec![event(
        project,
        1,
        "agent.upserted",
        json!({ "agents": agents }),
    )];
    for i in 0..size {
        setup.push(event(
            project,
            2 + i,
            "agent.status_changed",
            json!({"agent_id": format!("agent-{i}"), "status": "online"}),
        ));
    }
    setup
}

fn worker_env(connections: u16) -> [(&'static str, String); 1] {
    [("SWITCHBOARD_REDIS_CONNECTIONS", connections.to_string())]
}

/// The worker with the team applied, running.
async fn worker_with_team(config: &Config, session: &Session, tag: &str, n: u16) -> Workers {
    let setup = team(tag);
    publish_all(session, &config.inbound_exchange, &setup).await;
    let batch = Config::default().batch_size;
    let workers = Workers::start_with_env(config, 1, batch, &worker_env(n));
    workers.wait_handled(setup.len() as u64).await;
    workers
}

async fn start(handler: Handler, config: &Config) -> Running {
    match handler {
        Handler::Relay => Running::Relay(Relay::start(config).await),
        Handler::Loaded(turns) => Running::Relay(Relay::start_loaded(config, turns).await),
        Handler::Batched => Running::Batched(BatchedRelay::start(config).await),
        Handler::Worker(n) => Running::Worker(Workers::start_with_env(
            config,
            1,
            Config::default().batch_size,
            &worker_env(n),
        )),
    }
}

/// A Python script of `SCRIPTS` with these arguments, its stdout piped.
fn script(python: &str, name: &str, args: &[String]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let mut child = Command::new(python)
        .arg(format!("{SCRIPTS}/{name}"))
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    (child, lines)
}

/// The next JSON line a script prints (it fails the run if the script stopped).
async fn next(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> Value {
    let line = lines
        .next_line()
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{what}: the script stopped (see its error above)"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"))
}

fn amqp(config: &Config) -> String {
    config.amqp_url.as_str().to_string()
}

fn publisher_args(config: &Config, tag: &str, count: usize, rate: u64) -> Vec<String> {
    vec![
        "--amqp".into(),
        amqp(config),
        "--exchange".into(),
        config.inbound_exchange.clone(),
        "--work-queue".into(),
        config.work_queue.clone(),
        "--project".into(),
        tag.into(),
        "--count".into(),
        count.to_string(),
        "--rate".into(),
        rate.to_string(),
    ]
}

fn receiver_args(mode: &str, config: &Config, handler: Handler, count: usize) -> Vec<String> {
    vec![
        mode.into(),
        "--amqp".into(),
        amqp(config),
        "--work-queue".into(),
        config.work_queue.clone(),
        "--out-exchange".into(),
        config.outbound_exchange.clone(),
        "--key".into(),
        handler.output().into(),
        "--queue".into(),
        format!("{}.sink", config.work_queue.trim_end_matches(".work")),
        "--count".into(),
        count.to_string(),
    ]
}

/// Redis's own counters: CPU seconds (user + system) and, per command, calls and µs.
pub struct RedisStats {
    pub cpu: f64,
    pub commands: BTreeMap<String, (f64, f64)>,
}

pub async fn redis_stats(redis: &mut redis::aio::MultiplexedConnection) -> RedisStats {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .arg("commandstats")
        .query_async(redis)
        .await
        .unwrap();
    let mut stats = RedisStats {
        cpu: 0.0,
        commands: BTreeMap::new(),
    };
    for line in info.lines() {
        let Some((name, value)) = line.trim().split_once(':') else {
            continue;
        };
        if name == "used_cpu_sys" || name == "used_cpu_user" {
            stats.cpu += value.parse::<f64>().unwrap_or(0.0);
        } else if let Some(command) = name.strip_prefix("cmdstat_") {
            let field = |key: &str| {
                value
                    .split(',')
                    .find_map(|f| f.strip_prefix(key))
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            };
            stats
                .commands
                .insert(command.into(), (field("calls="), field("usec=")));
        }
    }
    stats
}

/// One drain, its figures.
#[derive(Clone, Default)]
struct Drain {
    rate: f64,
    cpu: CpuPerEvents,
    /// Redis CPU µs per creation, from `INFO cpu`.
    redis_cpu_us: f64,
    /// µs per creation inside the commands the handler sends (FCALL, EVALSHA…), and the other
    /// commands' µs, from `INFO commandstats` (Redis 7 counts the commands a script runs under
    /// their own names too: those are left out, they are inside the script's time).
    commands: Vec<(String, f64, f64)>,
    /// The worker's mean events per store call, as batches formed (0 for the relays).
    batch: f64,
}

async fn drain(python: &str, handler: Handler, events: usize) -> Drain {
    let tag = new_tag();
    let config = config(&tag);
    let session = Session::open(&config, "bench").await.unwrap();
    if let Handler::Worker(n) = handler {
        worker_with_team(&config, &session, &tag, n).await.stop();
    }
    let (mut publisher, mut published) = script(
        python,
        "publisher.py",
        &publisher_args(&config, &tag, events, 0),
    );
    next(&mut published, "publisher").await;
    assert!(
        publisher.wait().await.unwrap().success(),
        "publisher failed"
    );
    let (mut receiver, mut said) = script(
        python,
        "receiver.py",
        &receiver_args("drain", &config, handler, events),
    );
    let ready = next(&mut said, "receiver").await;
    assert_eq!(ready["backlog"], events, "the backlog is in the work queue");
    let running = start(handler, &config).await;
    next(&mut said, "receiver").await; // first
    let mut redis = redis_connection(&config).await;
    let cpu = CpuUse::start(running.pids());
    let before = redis_stats(&mut redis).await;
    let last = next(&mut said, "receiver").await;
    let after = redis_stats(&mut redis).await;
    let cpu = cpu.finish(events as u64);
    let batch = match &running {
        Running::Worker(workers) => workers.mean_batch().await,
        _ => 0.0,
    };
    assert!(receiver.wait().await.unwrap().success(), "receiver failed");
    running.stop();
    session.close().await;
    cleanup(&config).await;
    let seconds = last["seconds"].as_f64().unwrap();
    let per = |us: f64| us / events as f64;
    let mut commands: Vec<(String, f64, f64)> = after
        .commands
        .iter()
        .filter_map(|(name, (calls, usec))| {
            let (calls0, usec0) = before.commands.get(name).copied().unwrap_or((0.0, 0.0));
            let calls = calls - calls0;
            (calls > 0.0).then(|| (name.clone(), calls / events as f64, per(usec - usec0)))
        })
        .collect();
    commands.sort_by(|a, b| b.2.total_cmp(&a.2));
    Drain {
        rate: events as f64 / seconds,
        cpu,
        redis_cpu_us: per((after.cpu - before.cpu) * 1e6),
        commands,
        batch,
    }
}

/// One latency run, its figures.
#[derive(Clone, Copy)]
struct Latency {
    p50: f64,
    p99: f64,
    /// Redis CPU µs (`INFO cpu`) per event published, over the run (from the publisher's start
    /// to the receiver's last output).
    redis_us: f64,
    /// RabbitMQ's and the consuming process's CPU per event (`/proc`) over the same time.
    cpu: CpuPerEvents,
}

/// Redis CPU µs of one turn of [`crate::relay::BUSY_LOOP`], as `INFO commandstats` times a
/// script of 200,000 turns run 11 times.
async fn busy_loop_turn_us(config: &Config) -> f64 {
    const TURNS: u32 = 200_000;
    let mut redis = redis_connection(config).await;
    let script = format!("{} return 0", crate::relay::BUSY_LOOP);
    let before = redis_stats(&mut redis).await;
    for _ in 0..11 {
        let _: i64 = redis::cmd("EVAL")
            .arg(&script)
            .arg(0)
            .arg("")
            .arg(TURNS)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
    let after = redis_stats(&mut redis).await;
    let (calls, usec) = after.commands["eval"];
    let (calls0, usec0) = before.commands.get("eval").copied().unwrap_or((0.0, 0.0));
    (usec - usec0) / (calls - calls0) / TURNS as f64
}

/// The turns of [`crate::relay::BUSY_LOOP`] that give the bare relay, which spent `relay_us`
/// of Redis CPU per event, the worker's `worker_us`.
fn turns_for(relay_us: f64, worker_us: f64, turn_us: f64) -> u32 {
    ((worker_us - relay_us).max(0.0) / turn_us).round() as u32
}

/// One latency run of `handler` at `rate` events a second for `seconds`.
async fn latency(python: &str, handler: Handler, rate: u64, seconds: u64) -> Latency {
    let tag = new_tag();
    let config = config(&tag);
    let session = Session::open(&config, "bench").await.unwrap();
    let running = match handler {
        Handler::Worker(n) => Running::Worker(worker_with_team(&config, &session, &tag, n).await),
        _ => start(handler, &config).await,
    };
    let count = (rate * seconds) as usize;
    let (mut receiver, mut said) = script(
        python,
        "receiver.py",
        &receiver_args("latency", &config, handler, count),
    );
    next(&mut said, "receiver").await;
    let mut redis = redis_connection(&config).await;
    let before = redis_stats(&mut redis).await;
    let cpu = CpuUse::start(running.pids());
    let (mut publisher, mut published) = script(
        python,
        "publisher.py",
        &publisher_args(&config, &tag, count, rate),
    );
    next(&mut published, "publisher").await;
    assert!(
        publisher.wait().await.unwrap().success(),
        "publisher failed"
    );
    let result = next(&mut said, "receiver").await;
    let after = redis_stats(&mut redis).await;
    let cpu = cpu.finish(count as u64);
    assert!(receiver.wait().await.unwrap().success(), "receiver failed");
    running.stop();
    session.close().await;
    cleanup(&config).await;
    let received = result["received"].as_u64().unwrap_or(0) as usize;
    if received < count {
        eprintln!(
            "(o) {}: only {received} of {count} outputs arrived",
            handler.name()
        );
    }
    Latency {
        p50: result["p50"].as_f64().unwrap(),
        p99: result["p99"].as_f64().unwrap(),
        redis_us: (after.cpu - before.cpu) * 1e6 / count as f64,
        cpu,
    }
}

/// Part (o).
pub async fn outside(flags: &Flags, report: &mut Report) {
    report.line("## (o) from outside: pika publisher and receiver\n");
    let python = match python() {
        Ok(python) => python,
        Err(why) => {
            eprintln!("{why}");
            report.line(format!("Not run: {why}\n"));
            return;
        }
    };
    let events = flags.events();
    let rounds = flags.drains();
    let handlers = [
        Handler::Relay,
        Handler::Worker(1),
        Handler::Batched,
        Handler::Worker(4),
    ];
    let mut drains: Vec<Vec<Drain>> = vec![vec![]; handlers.len()];
    for round in 1..=rounds {
        for (i, handler) in handlers.iter().enumerate() {
            eprintln!("(o) drain round {round}/{rounds}: {}…", handler.name());
            let run = drain(&python, *handler, events).await;
            eprintln!("    {:.0} ev/s", run.rate);
            drains[i].push(run);
        }
    }
    let medians: Vec<Drain> = drains
        .iter()
        .map(|runs| {
            let mut sorted = runs.clone();
            sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            sorted[sorted.len() / 2].clone()
        })
        .collect();
    let (relay, worker, batched, worker4) = (&medians[0], &medians[1], &medians[2], &medians[3]);
    report.drain_redis_us = Some(worker.cpu.redis);
    report.line(format!("A backlog of {events} `conversation.created` (each answered by one output), published by `{SCRIPTS}/publisher.py`; `receiver.py` times from the first event taken off the work queue to the last output in its output queue (polling both with passive declares every 2 ms), the same way for every handler. Prefetch 64, quorum queues, persistent messages. The handlers take turns, {rounds} round(s); median per handler. The worker runs with the default batch size ({}).\n", Config::default().batch_size));
    report.line("| | ev/s (median) | every round | worker's ratio to it |\n|---|---|---|---|");
    for (i, handler) in handlers.iter().enumerate() {
        let every: Vec<String> = drains[i].iter().map(|d| format!("{:.0}", d.rate)).collect();
        let ratio = match handler {
            Handler::Relay | Handler::Batched => format!("{:.2}", worker.rate / medians[i].rate),
            _ => String::new(),
        };
        report.line(format!(
            "| {} | {:.0} | {} | {ratio} |",
            handler.name(),
            medians[i].rate,
            every.join(", ")
        ));
    }
    report.line("");
    report.line(format!(
        "4 Redis connections against 1: {:.2}× the drain rate. Batches as they formed in the worker's median drains: {:.1} events per store call (1 connection), {:.1} (4).\n",
        worker4.rate / worker.rate,
        worker.batch,
        worker4.batch
    ));
    report.line("CPU per creation in each handler's median drain, µs (from `/proc`: Redis, RabbitMQ's `beam.smp`, the consuming process: a worker, or the benchmark itself for the relays), and Redis's own figures (`INFO cpu`, and `INFO commandstats` for the commands the handler sends):\n");
    report.line("| | Redis | RabbitMQ | consumer | total | machine busy | Redis `used_cpu` | Redis commands (calls per creation, µs per creation) |\n|---|---|---|---|---|---|---|---|");
    for (i, handler) in handlers.iter().enumerate() {
        let d = &medians[i];
        // Commands a script runs are counted under their own names too: keep the ones sent.
        let sent: Vec<String> = d
            .commands
            .iter()
            .filter(|(name, calls, _)| {
                matches!(
                    name.as_str(),
                    "fcall" | "evalsha" | "eval" | "function|load"
                ) || (*calls >= 0.001
                    && !d
                        .commands
                        .iter()
                        .any(|(n, _, _)| matches!(n.as_str(), "fcall" | "evalsha")))
            })
            .take(4)
            .map(|(name, calls, us)| format!("{name} {calls:.3}, {us:.1}"))
            .collect();
        report.line(format!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0}% | {:.1} | {} |",
            handler.name(),
            d.cpu.redis,
            d.cpu.rabbitmq,
            d.cpu.handler,
            d.cpu.redis + d.cpu.rabbitmq + d.cpu.handler,
            d.cpu.busy * 100.0,
            d.redis_cpu_us,
            sent.join("; ")
        ));
    }
    report.line("");
    // What the worker's calls run inside Redis (Redis 7 counts the commands a function calls
    // under their own names too, with their own time).
    let inner: Vec<String> = worker
        .commands
        .iter()
        .filter(|(name, _, _)| !matches!(name.as_str(), "fcall" | "info" | "ping"))
        .take(10)
        .map(|(name, calls, us)| format!("`{name}` {calls:.2} calls, {us:.1} µs"))
        .collect();
    report.line(format!(
        "Inside the worker's calls, per creation (calls, and µs spent in the command itself), the costliest first: {}.\n",
        inner.join(", ")
    ));
    report.bars(
        &format!(
            "(o) drain from outside: worker {:.2}× relay, {:.2}× batched",
            worker.rate / relay.rate,
            worker.rate / batched.rate
        ),
        "ev/s",
        handlers
            .iter()
            .zip(&medians)
            .map(|(h, d)| (h.name().replace(", ", "\n"), d.rate)),
    );

    let seconds = flags.latency_seconds();
    let latency_rounds = if flags.quick { 1 } else { 5 };
    let turn_us = busy_loop_turn_us(&config(&new_tag())).await;
    let mut rows = vec![];
    let mut bars = vec![];
    let mut loads = vec![];
    for (rate, rounds, handlers) in [
        (
            2000,
            latency_rounds,
            &[
                Handler::Relay,
                Handler::Worker(1),
                Handler::Loaded(0),
                Handler::Worker(4),
            ][..],
        ),
        (
            1000,
            latency_rounds.min(3),
            &[Handler::Relay, Handler::Worker(1)][..],
        ),
    ] {
        let mut runs: Vec<Vec<Latency>> = vec![vec![]; handlers.len()];
        for round in 1..=rounds {
            for (i, handler) in handlers.iter().enumerate() {
                // The loaded relay spends what the worker spent more than the bare relay, in
                // this round's runs (they come first).
                let handler = match handler {
                    Handler::Loaded(_) => {
                        let (relay, worker) = (runs[0][round - 1], runs[1][round - 1]);
                        let turns = turns_for(relay.redis_us, worker.redis_us, turn_us);
                        loads.push(turns);
                        Handler::Loaded(turns)
                    }
                    handler => *handler,
                };
                eprintln!(
                    "(o) latency {rate} ev/s round {round}/{rounds}: {}…",
                    handler.name()
                );
                let run = latency(&python, handler, rate, seconds).await;
                eprintln!(
                    "    p50 {:.1} ms, p99 {:.1} ms; CPU per event: Redis {:.0} µs, RabbitMQ {:.0}, consumer {:.0}",
                    run.p50, run.p99, run.redis_us, run.cpu.rabbitmq, run.cpu.handler
                );
                runs[i].push(run);
            }
        }
        let of = |runs: &[Latency], figure: fn(&Latency) -> f64| {
            median(&runs.iter().map(figure).collect::<Vec<_>>())
        };
        let p99s: Vec<f64> = runs.iter().map(|r| of(r, |x| x.p99)).collect();
        let loaded = handlers
            .iter()
            .position(|h| matches!(h, Handler::Loaded(_)));
        for (i, handler) in handlers.iter().enumerate() {
            let every: Vec<String> = runs[i].iter().map(|x| format!("{:.1}", x.p99)).collect();
            let (to_relay, to_loaded) = match handler {
                Handler::Worker(_) => (
                    format!("{:.2}", p99s[i] / p99s[0]),
                    loaded.map_or(String::new(), |l| format!("{:.2}", p99s[i] / p99s[l])),
                ),
                _ => Default::default(),
            };
            rows.push(format!(
                "| {rate} | {} | {:.1} | {:.1} | {} | {:.0} / {:.0} / {:.0} | {to_relay} | {to_loaded} |",
                handler.name(),
                of(&runs[i], |x| x.p50),
                p99s[i],
                every.join(", "),
                of(&runs[i], |x| x.redis_us),
                of(&runs[i], |x| x.cpu.rabbitmq),
                of(&runs[i], |x| x.cpu.handler),
            ));
            bars.push((
                format!("{}\n{rate}/s", handler.name().replace(", ", "\n")),
                p99s[i],
            ));
        }
    }
    let loads: Vec<String> = loads.iter().map(u32::to_string).collect();
    report.line(format!("Latency: `publisher.py` publishes creations at a fixed rate for {seconds} s (each conversation id carries its publish instant); `receiver.py`, another process, consumes the output queue and times publish → `conversation.assigned` (worker) or → relayed copy (relays). The handlers take turns, {latency_rounds} round(s) at 2,000 ev/s and {} at 1,000; median of the rounds' p50, p99 and CPU per event over the run (Redis's from `INFO cpu`, RabbitMQ's and the consuming process's from `/proc`; the relays run in the benchmark's process). The relay with the worker's Redis CPU is the bare relay whose script first turns an empty Lua loop (no command, no key) as many times as it takes to spend what the worker spent more than the bare relay in the same round: one turn costs {turn_us:.4} µs here, and the rounds took {} turns. What Redis CPU accounts for in the worker's tail is the gap between the two relays; the rest is the gap between the loaded relay and the worker.\n", latency_rounds.min(3), loads.join(", ")));
    report.line("| events/s | handler | p50 ms | p99 ms (median) | p99 every round | CPU µs per event: Redis / RabbitMQ / consumer | worker p99 / relay p99 | worker p99 / loaded relay p99 |\n|---|---|---|---|---|---|---|---|");
    for row in rows {
        report.line(row);
    }
    report.line("");
    report.bars("(o) p99 publish → output, from outside", "ms", bars);
}
