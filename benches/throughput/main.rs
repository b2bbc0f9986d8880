//! Throughput and latency of Switchboard workers against the machine's real RabbitMQ and Redis,
//! side by side with a bare relay built here, in one run:
//!
//! (a) drain rate of one worker over a backlog of mixed events vs the bare relay (consume → one
//!     small Redis script → publish with confirm → ack; same queue type, durability, prefetch);
//! (b) publish → `conversation.assigned` latency p50/p99 at fixed rates;
//! (c) drain rate with 10 vs 10,000 agents;
//! (d) drain rate with 1, 2 and 4 workers;
//! (e) Redis time and commands per event type, from the slow log;
//! (f) Redis CPU per event, the backlog applied in batches straight through the store;
//! (o) drain and latency from outside, pika publisher and receiver (`benches/outside`);
//! (m) Redis memory per open and per closed conversation;
//! (i) Redis instructions per creation, counted by callgrind (valgrind) in a private
//!     `redis-server`: the same on every run, so one run compares two versions of the library.
//!
//! Workers are `switchboard run` processes (release build); drains are timed from the moment the
//! backlog is in the queue and the workers start, to the moment they have handled every event
//! (read from their `/metrics`). `cargo bench --bench throughput` (add `-- --quick` for a short
//! run, `--only a,b` for some parts, `--rounds N` for N rounds of (a)); results are printed and
//! written to `bench-results/`. `BENCH_WORKER_BIN=<path>` runs another build's `switchboard` as
//! the worker: on a noisy machine, the one fair comparison of two versions is runs that take
//! turns against the same relay.

mod backlog;
mod batched_relay;
mod cpu;
mod flags;
mod instructions;
mod isolation;
mod latency;
mod memory;
mod outside;
mod parts;
mod redis_cost;
mod relay;
mod report;
mod workers;

use clap::Parser;

use flags::{Flags, Part};
use report::Report;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let mut report = Report::new(&cpu::machine(), flags.events());
    for part in flags.parts() {
        let report = &mut report;
        match part {
            Part::A => parts::one_worker_vs_relay(&flags, report).await,
            Part::B => parts::latencies(&flags, report).await,
            Part::C => parts::team_size(&flags, report).await,
            Part::D => parts::workers(&flags, report).await,
            Part::E => parts::redis_time(&flags, report).await,
            Part::F => parts::redis_cpu(&flags, report).await,
            Part::O => outside::outside(&flags, report).await,
            Part::M => memory::memory(&flags, report).await,
            Part::I => instructions::instructions(report).await,
        }
    }
    report.write()?;
    isolation::forget_library(&isolation::config("bench")).await;
    Ok(())
}
