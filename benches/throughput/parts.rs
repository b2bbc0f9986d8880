//! The six parts of a run, each measuring one thing and writing its section of the report.

use switchboard::config::Config;

use crate::backlog::Features;
use crate::cpu::CpuPerEvents;
use crate::flags::Flags;
use crate::latency::{latency, Handler};
use crate::redis_cost::{redis_cpu_per_event, redis_cpu_per_event_with, redis_time_by_type};
use crate::relay::relay_drain;
use crate::report::{median, median_run, Report};
use crate::workers::worker_drain;

/// (a) One worker draining the backlog against the bare relay, with batching and without.
/// The machine is shared and noisy: the three handlers take turns, round after round, and each
/// figure is the median of its rounds.
pub async fn one_worker_vs_relay(flags: &Flags, report: &mut Report) {
    let (events, rounds) = (flags.events(), flags.rounds());
    let batch_size = Config::default().batch_size;
    let (mut relays, mut workers, mut unbatched_runs) = (vec![], vec![], vec![]);
    let mut batches = vec![];
    for round in 1..=rounds {
        eprintln!("(a) round {round}/{rounds}: bare relay, worker, worker with batching off…");
        relays.push(relay_drain(events).await);
        let (rate, cpu, batch) = worker_drain(10, events, Features::Plain, 1, batch_size).await;
        workers.push((rate, cpu));
        batches.push(batch);
        let (rate, cpu, _) = worker_drain(10, events, Features::Plain, 1, 1).await;
        unbatched_runs.push((rate, cpu));
    }
    let (relay, relay_cpu) = median_run(&relays);
    let (worker, worker_cpu) = median_run(&workers);
    let (unbatched, unbatched_cpu) = median_run(&unbatched_runs);
    let batch = median(&batches);
    report.line("## (a) one worker vs the bare relay\n");
    report.line(format!("Median of {rounds} rounds (each round drains with the relay, the worker, then the worker with batching off). The worker applies events that arrived together in one Redis call (`SWITCHBOARD_BATCH_SIZE`, default {batch_size}; {batch:.1} events per batch); the relay handles one event at a time.\n"));
    report.line(format!(
        "| bare relay | worker | ratio | worker, batching off | ratio |\n|---|---|---|---|---|\n| {relay:.0} ev/s | {worker:.0} ev/s | {:.2} | {unbatched:.0} ev/s | {:.2} |\n",
        worker / relay,
        unbatched / relay
    ));
    let rates = |runs: &[(f64, CpuPerEvents)]| {
        runs.iter()
            .map(|(rate, _)| format!("{rate:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    report.line(format!(
        "Every round, ev/s: bare relay {}; worker {}; batching off {}.\n",
        rates(&relays),
        rates(&workers),
        rates(&unbatched_runs)
    ));
    // A round's relay and worker drain back to back, under much the same load from the rest
    // of the machine: the median of the rounds' own ratios pairs them.
    let paired = |runs: &[(f64, CpuPerEvents)]| {
        let ratios: Vec<f64> = runs
            .iter()
            .zip(&relays)
            .map(|((rate, _), (relay, _))| rate / relay)
            .collect();
        median(&ratios)
    };
    report.line(format!(
        "Median of the rounds' own ratios (each round's worker over that round's relay): worker {:.2}, batching off {:.2}.\n",
        paired(&workers),
        paired(&unbatched_runs)
    ));
    report.line("CPU ms per 1,000 events in the median round (where the time goes; all processes share the machine's cores):\n");
    report.line(
        "| | RabbitMQ | Redis | handler process | total | machine busy |\n|---|---|---|---|---|---|",
    );
    for (name, cpu) in [
        ("bare relay", relay_cpu),
        ("worker", worker_cpu),
        ("worker, batching off", unbatched_cpu),
    ] {
        report.line(format!(
            "| {name} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0}% |",
            cpu.rabbitmq,
            cpu.redis,
            cpu.handler,
            cpu.rabbitmq + cpu.redis + cpu.handler,
            cpu.busy * 100.0
        ));
    }
    report.line("");
    report.bars(
        &format!("(a) drain rate, ratio {:.2}", worker / relay),
        "ev/s",
        [
            ("bare relay", relay),
            ("worker", worker),
            ("batching off", unbatched),
        ],
    );
}

/// (b) Publish → `conversation.assigned` latency at fixed rates, beside the bare relay's.
pub async fn latencies(flags: &Flags, report: &mut Report) {
    report.line("## (b) publish → conversation.assigned latency\n");
    report.line("The bare relay's figure (publish → relayed copy, same events) is the floor this broker, Redis and machine allow.\n");
    report.line("| events/s | worker p50 | worker p99 | bare relay p50 | bare relay p99 |\n|---|---|---|---|---|");
    let mut bars = vec![];
    let seconds = flags.latency_seconds();
    for rate in [500, 2000, 5000] {
        eprintln!("(b) {rate} events/s…");
        let (p50, p99) = latency(rate, seconds, Handler::Worker).await;
        let (relay_p50, relay_p99) = latency(rate, seconds, Handler::Relay).await;
        report.line(format!(
            "| {rate} | {p50:.2} ms | {p99:.2} ms | {relay_p50:.2} ms | {relay_p99:.2} ms |"
        ));
        bars.push((format!("worker p99\n{rate}/s"), p99));
        bars.push((format!("relay p99\n{rate}/s"), relay_p99));
    }
    report.line("");
    report.bars("(b) publish → assigned latency", "ms", bars);
}

/// The median drain rate of `flags.drains()` drains with `agents` and `workers`.
async fn median_drain(flags: &Flags, agents: usize, features: Features, workers: usize) -> f64 {
    let mut rates = vec![];
    for _ in 0..flags.drains() {
        let (rate, _, _) = worker_drain(
            agents,
            flags.events(),
            features,
            workers,
            Config::default().batch_size,
        )
        .await;
        rates.push(rate);
    }
    median(&rates)
}

/// (c) The drain rate with 10 agents and with 10,000, for a plain project and for one that uses
/// every routing feature at once.
pub async fn team_size(flags: &Flags, report: &mut Report) {
    report.line("## (c) team size\n");
    report.line(format!("Median of {} drains each. With every feature: rules with skill levels ordered by level, channels with their own capacities, longest-idle tie-break, inactivity, wrap-up, reply timeout and auto-away all on.\n", flags.drains()));
    report.line("| project | 10 agents | 10,000 agents | ratio |\n|---|---|---|---|");
    let mut bars = vec![];
    for (name, features) in [
        ("plain", Features::Plain),
        ("every feature", Features::Every),
    ] {
        eprintln!("(c) team size, {name}…");
        let small = median_drain(flags, 10, features, 1).await;
        let large = median_drain(flags, 10_000, features, 1).await;
        report.line(format!(
            "| {name} | {small:.0} ev/s | {large:.0} ev/s | {:.2} |",
            large / small
        ));
        bars.push((format!("{name}, 10 agents"), small));
        bars.push((format!("{name}, 10,000 agents"), large));
    }
    // Steadier than a drain on a shared machine: Redis's own CPU per event, the backlog applied
    // straight through the store as part (f) does (the ratio is 10 agents' cost over 10,000's).
    eprintln!("(c) team size, every feature, Redis CPU…");
    let batch = Config::default().batch_size.into();
    let cpu = |agents| redis_cpu_per_event_with(flags.events(), batch, agents, Features::Every);
    let (small, large) = (cpu(10).await, cpu(10_000).await);
    report.line(format!(
        "| every feature, Redis CPU per event, as in (f) | {small:.1} µs | {large:.1} µs | {:.2} |",
        small / large
    ));
    report.line("");
    report.bars("(c) team size", "ev/s", bars);
}

/// (d) The drain rate with 1, 2 and 4 workers.
pub async fn workers(flags: &Flags, report: &mut Report) {
    report.line("## (d) workers\n");
    report.line(format!("Median of {} drains each.\n", flags.drains()));
    report.line("| workers | drain rate |\n|---|---|");
    let mut bars = vec![];
    for workers in [1, 2, 4] {
        eprintln!("(d) {workers} workers…");
        let rate = median_drain(flags, 10, Features::Plain, workers).await;
        report.line(format!("| {workers} | {rate:.0} ev/s |"));
        bars.push((
            format!("{workers} worker{}", if workers > 1 { "s" } else { "" }),
            rate,
        ));
    }
    report.line("");
    report.bars("(d) workers", "ev/s", bars);
}

/// (e) Redis time and commands per event type, one FCALL at a time, no broker.
pub async fn redis_time(flags: &Flags, report: &mut Report) {
    report.line("## (e) Redis time per event, by type (one FCALL at a time, no broker)\n");
    report.line("Read from Redis's slow log at threshold 0, which adds its own cost to every command: compare the rows, not the absolute figures.\n");
    report.line("| event type | events | µs in Redis (mean) | Redis commands run (mean) | µs per call, client side (mean) |\n|---|---|---|---|---|");
    for cost in redis_time_by_type(flags.events()).await {
        report.line(format!(
            "| {} | {} | {:.0} | {:.1} | {:.0} |",
            cost.event_type, cost.events, cost.redis_us, cost.commands, cost.client_us
        ));
    }
    report.line("");
}

/// (f) Redis CPU per event, the backlog applied in batches straight through the store.
pub async fn redis_cpu(flags: &Flags, report: &mut Report) {
    let batch_size = Config::default().batch_size;
    report.line("## (f) Redis CPU per event (batches straight through the store, no broker)\n");
    report.line(format!("The backlog of (a), applied in batches of {batch_size} (one call at a time), three times; Redis's own CPU time (user + system) per event, median: the decision's cost, the largest part of what separates the worker from the relay, free of the broker and steadier than drain rates on a shared machine.\n"));
    let mut runs = vec![];
    for _ in 0..3 {
        runs.push(redis_cpu_per_event(flags.events(), batch_size.into()).await);
    }
    let one = redis_cpu_per_event(flags.events(), 1).await;
    report.line(format!(
        "| batches of {batch_size} | batches of 1 |\n|---|---|\n| {:.1} µs | {one:.1} µs |\n",
        median(&runs)
    ));
}
