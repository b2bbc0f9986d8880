//! The benchmark's command line, as `cargo bench --bench throughput -- <flags>` passes it.

use clap::{Parser, ValueEnum};

/// The parts of a run, in the order they run (see the benchmark's documentation).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Part {
    A,
    B,
    C,
    D,
    E,
    F,
    /// From outside: pika publisher and receiver (benches/outside), worker vs relays.
    O,
    /// Redis memory per open and per closed conversation.
    M,
    /// Redis instructions per creation, counted by callgrind in a private redis-server.
    I,
}

/// Throughput and latency of Switchboard workers against the machine's RabbitMQ and Redis,
/// beside a bare relay. `BENCH_WORKER_BIN=<path>` runs another build as the worker.
#[derive(Parser, Debug)]
#[command(name = "throughput")]
pub struct Flags {
    /// A short run: fewer events per drain, one round of (a), one drain each in (c) and (d),
    /// shorter latency runs.
    #[arg(long)]
    pub quick: bool,
    /// Only these parts, comma-separated (`--only a,c`); every part by default.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<Part>,
    /// Rounds of part (a) (default 5, 1 with `--quick`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub rounds: Option<u32>,
    /// `cargo bench` passes it to every benchmark binary; nothing to do with it.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Flags {
    /// The parts to run, in order.
    pub fn parts(&self) -> Vec<Part> {
        Part::value_variants()
            .iter()
            .copied()
            .filter(|part| self.only.is_empty() || self.only.contains(part))
            .collect()
    }

    /// Events per drain.
    pub fn events(&self) -> usize {
        if self.quick {
            5_000
        } else {
            30_000
        }
    }

    /// Rounds of part (a): the handlers take turns, round after round, on a noisy machine.
    pub fn rounds(&self) -> u32 {
        self.rounds.unwrap_or(if self.quick { 1 } else { 5 })
    }

    /// Drains behind each figure of parts (c), (d) and (o): a single drain on this shared
    /// machine can come out a third slow.
    pub fn drains(&self) -> usize {
        if self.quick {
            1
        } else {
            3
        }
    }

    /// Seconds of each latency run of part (b).
    pub fn latency_seconds(&self) -> u64 {
        if self.quick {
            2
        } else {
            5
        }
    }
}
