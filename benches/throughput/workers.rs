//! Release-built `switchboard run` processes draining a backlog, watched through their
//! `/metrics`, timed from the first event handled.

use std::process::Child;
use std::time::{Duration, Instant};

use switchboard::broker::Session;
use switchboard::config::Config;

use crate::backlog::{backlog_with, publish_all, Features};
use crate::cpu::{CpuPerEvents, CpuUse};
use crate::isolation::{cleanup, config, free_ports, new_tag};

/// Worker processes and their HTTP ports. Killed when dropped, so that a run that fails leaves
/// none behind.
pub struct Workers {
    children: Vec<Child>,
    ports: Vec<u16>,
}

impl Workers {
    /// `count` workers on `config`'s topology, applying at most `batch_size` events per call.
    /// `BENCH_WORKER_BIN` names another build to run.
    pub fn start(config: &Config, count: usize, batch_size: u16) -> Workers {
        Workers::start_with_env(config, count, batch_size, &[])
    }

    /// [`Workers::start`] with more `SWITCHBOARD_*` settings (name, value).
    pub fn start_with_env(
        config: &Config,
        count: usize,
        batch_size: u16,
        env: &[(&str, String)],
    ) -> Workers {
        let binary = std::env::var("BENCH_WORKER_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_switchboard").into());
        let mut workers = Workers {
            children: vec![],
            ports: vec![],
        };
        for port in free_ports(count).unwrap() {
            let child = std::process::Command::new(&binary)
                .arg("run")
                .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{port}"))
                .env("SWITCHBOARD_INBOUND_EXCHANGE", &config.inbound_exchange)
                .env("SWITCHBOARD_WORK_QUEUE", &config.work_queue)
                .env("SWITCHBOARD_OUTBOUND_EXCHANGE", &config.outbound_exchange)
                .env("SWITCHBOARD_DEAD_LETTER_QUEUE", &config.dead_letter_queue)
                .env("SWITCHBOARD_BATCH_SIZE", batch_size.to_string())
                .env("RUST_LOG", "warn")
                .envs(env.iter().map(|(name, value)| (name, value)))
                .spawn()
                .unwrap();
            workers.children.push(child);
            workers.ports.push(port);
        }
        workers
    }

    /// The workers' process ids (for their CPU readings).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|c| c.id()).collect()
    }

    /// Waits until every worker is connected and consuming.
    pub async fn wait_ready(&self) {
        for port in &self.ports {
            while !http_get(*port, "/readyz")
                .await
                .is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    /// The sum over the workers of the metric samples whose line starts with `prefix`.
    async fn metric(&self, prefix: &str) -> f64 {
        self.metric_where(|line| line.starts_with(prefix)).await
    }

    /// The sum over all workers of the `/metrics` samples whose line passes `keep`: one scrape
    /// of each worker.
    async fn metric_where(&self, keep: impl Fn(&str) -> bool) -> f64 {
        let mut total = 0.0;
        for port in &self.ports {
            if let Ok(text) = http_get(*port, "/metrics").await {
                total += text
                    .lines()
                    .filter(|l| keep(l))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>();
            }
        }
        total
    }

    /// Events handled so far by all workers (timers that fired excluded: they are not the
    /// platform's events).
    async fn handled(&self) -> u64 {
        self.metric_where(|line| {
            line.starts_with("switchboard_events_total{")
                && !line.starts_with("switchboard_events_total{type=\"timer.fired\"")
        })
        .await as u64
    }

    /// Waits until the workers have handled `n` events. Each look is a `/metrics` scrape, which
    /// costs the workers a render and wake-ups (and Redis a ZCARD per project) in the middle of
    /// the drain they are timed on, where the relay's progress is an in-process counter, free to
    /// read: so it looks again when about half of what remains should be done at the rate so
    /// far, often only near the end.
    pub async fn wait_handled(&self, n: u64) {
        let started = Instant::now();
        let at_start = self.handled().await;
        loop {
            let done = self.handled().await;
            if done >= n {
                return;
            }
            let elapsed = started.elapsed().as_secs_f64();
            // A failed scrape counts a worker as 0: never below the start.
            let rate = done.saturating_sub(at_start) as f64 / elapsed.max(1e-3);
            let half_of_rest = if rate > 0.0 {
                (n - done) as f64 / rate / 2.0
            } else {
                0.02
            };
            tokio::time::sleep(Duration::from_secs_f64(half_of_rest.clamp(0.002, 0.2))).await;
        }
    }

    /// Mean number of events per batch the workers handled.
    pub async fn mean_batch(&self) -> f64 {
        self.metric("switchboard_batch_events_sum").await
            / self.metric("switchboard_batch_events_count").await
    }

    /// Drains `n` events and returns the rate, timed from the first event handled (not from
    /// process start: connecting and declaring are not draining), with the CPU spent meanwhile.
    async fn timed_drain(&self, n: u64) -> (f64, CpuPerEvents) {
        let mut first = self.handled().await;
        while first == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            first = self.handled().await;
        }
        let cpu = CpuUse::start(self.pids());
        let started = Instant::now();
        self.wait_handled(n).await;
        let rate = (n - first) as f64 / started.elapsed().as_secs_f64();
        (rate, cpu.finish(n - first))
    }

    /// Stops them as a deploy does (SIGTERM) and waits until they are gone.
    pub fn stop(mut self) {
        for child in &self.children {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Events per second for `workers` workers draining a mixed backlog of `events` (after the
/// setup of a team of `agents` is applied), for a project that uses `features`. `batch_size` is
/// the workers' `SWITCHBOARD_BATCH_SIZE`. Returns the rate, the CPU spent and the mean events
/// per batch.
pub async fn worker_drain(
    agents: usize,
    events: usize,
    features: Features,
    workers: usize,
    batch_size: u16,
) -> (f64, CpuPerEvents, f64) {
    let tag = new_tag();
    let config = config(&tag);
    let session = Session::open(&config, "bench").await.unwrap();
    let (setup, backlog) = backlog_with(&tag, agents, events, features);
    publish_all(&session, &config.inbound_exchange, &setup).await;
    let team = Workers::start(&config, 1, batch_size);
    team.wait_handled(setup.len() as u64).await;
    let dead = team.metric("switchboard_dead_letters_total").await;
    assert_eq!(
        dead, 0.0,
        "the team's setup was dead-lettered: see the workers' log"
    );
    team.stop();
    publish_all(&session, &config.inbound_exchange, &backlog).await;
    let team = Workers::start(&config, workers, batch_size);
    let (rate, cpu) = team.timed_drain(backlog.len() as u64).await;
    let batch = team.mean_batch().await;
    team.stop();
    session.close().await;
    cleanup(&config).await;
    (rate, cpu, batch)
}

async fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}
