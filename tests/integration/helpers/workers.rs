//! Workers against a test's topology: in this process (stopped like SIGTERM would, or on drop),
//! or as `switchboard run` processes held by a guard that kills them on drop, so that a failing
//! assertion leaves no process running.

use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use switchboard::application::Application;
use switchboard::clock::{Clock, SystemClock};
use switchboard::config::Config;
use switchboard::http::Readiness;
use tokio_util::sync::CancellationToken;

use super::env::Env;
use super::http::{http_get, series};
use super::names::{free_port, free_ports};

impl Env {
    /// A worker in this process, stopped when the handle is dropped or stopped.
    pub async fn spawn_worker(&self) -> WorkerHandle {
        self.spawn_worker_with_clock(Arc::new(SystemClock)).await
    }

    /// A worker in this process that tells time by `clock`.
    pub async fn spawn_worker_with_clock(&self, clock: Arc<dyn Clock>) -> WorkerHandle {
        let application = Application::build(self.config.clone(), clock)
            .await
            .unwrap();
        let http_addr = application.http_addr();
        let readiness = application.readiness();
        let connection_name = application.connection_name().to_string();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            application
                .run_until_stopped(async move { stopped.cancelled().await })
                .await
                .unwrap()
        });
        for _ in 0..100 {
            if readiness.is_ready() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(readiness.is_ready(), "the worker became ready");
        WorkerHandle {
            stop,
            task: Some(task),
            http_addr,
            readiness,
            connection_name,
        }
    }

    /// A worker as a separate `switchboard run` process (for SIGKILL and SIGTERM tests); hold
    /// it in [`WorkerProcesses`].
    pub fn spawn_process(&self) -> Child {
        worker_process(&self.config, 0)
    }
}

/// An in-process worker.
pub struct WorkerHandle {
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
    pub http_addr: SocketAddr,
    pub readiness: Arc<Readiness>,
    pub connection_name: String,
}

impl WorkerHandle {
    /// Stops it as SIGTERM would and waits until it has finished its in-flight events.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `switchboard run` processes, killed (SIGKILL) when dropped, so that a failing test leaves
/// none running. (One frozen by SIGSTOP when the test process itself dies keeps a SIGTERM or
/// SIGINT pending: only a SIGKILL, nextest's after its grace period, ends it then.)
pub struct WorkerProcesses {
    pub children: Vec<Child>,
    /// Where each serves `/metrics` (when known).
    pub http_ports: Vec<u16>,
}

impl WorkerProcesses {
    /// `n` worker processes on `env`'s topology, each serving HTTP on a port of its own.
    pub fn spawn(env: &Env, n: usize) -> WorkerProcesses {
        WorkerProcesses::configured(&vec![env.config.clone(); n])
    }

    /// A worker process for each configuration, each serving HTTP on a port of its own.
    pub fn configured(configs: &[Config]) -> WorkerProcesses {
        let http_ports = free_ports(configs.len());
        let children = configs
            .iter()
            .zip(&http_ports)
            .map(|(config, port)| worker_process(config, *port))
            .collect();
        WorkerProcesses {
            children,
            http_ports,
        }
    }

    /// Where each serves its HTTP endpoints.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.http_ports
            .iter()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], *port)))
            .collect()
    }

    /// Workers started otherwise (another build's, say), whose metrics are not read.
    pub fn of(children: Vec<Child>) -> WorkerProcesses {
        WorkerProcesses {
            children,
            http_ports: vec![],
        }
    }

    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`) to each.
    pub fn signal(&self, signal: &str) {
        for pid in self.pids() {
            let status = Command::new("kill")
                .arg(format!("-{signal}"))
                .arg(pid.to_string())
                .status()
                .expect("kill runs");
            assert!(status.success(), "kill -{signal} {pid}");
        }
    }

    /// Kills them at once (SIGKILL), as a crash would, and waits until they are gone.
    pub fn kill(&mut self) {
        for child in &mut self.children {
            child.kill().expect("SIGKILL");
            child.wait().unwrap();
        }
    }

    /// Stops them as a deploy does (SIGTERM: each finishes what it has) and returns how each
    /// exited.
    pub fn terminate(&mut self) -> Vec<ExitStatus> {
        self.signal("TERM");
        self.children
            .iter_mut()
            .map(|child| child.wait().unwrap())
            .collect()
    }

    /// Waits until these workers have handled every event published to `env` (applied them,
    /// or found them stale or duplicates, or dead-lettered them): their effect is then final.
    /// Read from their `/metrics`, as an operator would.
    pub async fn settled(&self, env: &Env) {
        let addrs = self.addrs();
        let mut handled = 0;
        for _ in 0..600 {
            handled = events_handled(&addrs).await;
            if handled >= env.published() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{handled} of {} events were handled within 15 s",
            env.published()
        );
    }
}

impl Drop for WorkerProcesses {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The events the workers serving `/metrics` at `addrs` have handled, from their
/// `switchboard_events_total` (every outcome but `failed`; timers, which workers send
/// themselves, left out).
pub async fn events_handled(addrs: &[SocketAddr]) -> u64 {
    let mut total = 0.0;
    for addr in addrs {
        let metrics = http_get(*addr, "/metrics").await.unwrap_or_default();
        total += series(&metrics, "switchboard_events_total")
            .filter(|(line, _)| {
                !line.contains("type=\"timer.fired\"") && !line.contains("outcome=\"failed\"")
            })
            .map(|(_, value)| value)
            .sum::<f64>();
    }
    total as u64
}

/// A `switchboard run` process configured like `config`, serving HTTP on `http_port` (0: any).
pub fn worker_process(config: &Config, http_port: u16) -> Child {
    worker_process_of(env!("CARGO_BIN_EXE_switchboard"), config, http_port)
}

/// A `switchboard run` process configured like `config`, its standard error kept (piped, to
/// be read), and the address of its HTTP endpoints.
pub fn logged_worker_process(config: &Config) -> (Child, SocketAddr) {
    let http_port = free_port();
    let worker = worker_command(env!("CARGO_BIN_EXE_switchboard"), config, http_port)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (worker, SocketAddr::from(([127, 0, 0, 1], http_port)))
}

/// Like [`worker_process`], with another build's binary (the previous release, say).
pub fn worker_process_of(binary: &str, config: &Config, http_port: u16) -> Child {
    worker_command(binary, config, http_port)
        .stdout(Stdio::null())
        .spawn()
        .expect("the switchboard binary starts")
}

/// `binary run` configured like `config` (through its `SWITCHBOARD_*` variables), serving HTTP
/// on `http_port` (0: any), logging warnings: to spawn with more logging or its output piped.
pub fn worker_command(binary: &str, config: &Config, http_port: u16) -> Command {
    let mut command = configured_command(binary, "run", config);
    command
        .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
        .env("RUST_LOG", "warn");
    command
}

/// `binary subcommand` configured like `config`, through its `SWITCHBOARD_*` variables (the
/// broker, Redis, the topology's names and the delivery limit its declarations carry).
pub fn configured_command(binary: &str, subcommand: &str, config: &Config) -> Command {
    let mut command = Command::new(binary);
    command
        .arg(subcommand)
        .env("SWITCHBOARD_AMQP_URL", config.amqp_url.as_str())
        .env("SWITCHBOARD_REDIS_URL", config.redis_url.as_str())
        .env("SWITCHBOARD_INBOUND_EXCHANGE", &config.inbound_exchange)
        .env("SWITCHBOARD_WORK_QUEUE", &config.work_queue)
        .env("SWITCHBOARD_OUTBOUND_EXCHANGE", &config.outbound_exchange)
        .env("SWITCHBOARD_DEAD_LETTER_QUEUE", &config.dead_letter_queue)
        .env("SWITCHBOARD_PREFETCH", config.prefetch.to_string())
        .env(
            "SWITCHBOARD_DELIVERY_LIMIT",
            config.delivery_limit.to_string(),
        );
    // Only when set otherwise: an earlier release knows no such setting, and refuses to start.
    if config.store_layout != Config::default().store_layout {
        command.env("SWITCHBOARD_STORE_LAYOUT", config.store_layout.to_string());
    }
    if config.worker_threads != Config::default().worker_threads {
        command.env(
            "SWITCHBOARD_WORKER_THREADS",
            config.worker_threads.to_string(),
        );
    }
    command
}

/// Closes a worker's broker connection from the broker's side, as a broker restart or a
/// network cut would.
pub fn close_broker_connection(connection_name: &str) {
    let listing = Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    let listing = String::from_utf8_lossy(&listing.stdout);
    let pid = listing
        .lines()
        .find(|line| line.contains(connection_name))
        .and_then(|line| line.split_whitespace().next())
        .unwrap_or_else(|| panic!("no connection named {connection_name} in {listing}"))
        .to_string();
    let closed = Command::new("rabbitmqctl")
        .args(["close_connection", &pid, "test: connection cut"])
        .output()
        .expect("rabbitmqctl runs");
    assert!(closed.status.success(), "{closed:?}");
}
