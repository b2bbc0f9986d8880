//! A private RabbitMQ node for tests that stop the broker: the machine's shared node must stay
//! up for the tests running beside them.
//!
//! The node gets its own name (`sbtest-<hex>@localhost`), its own AMQP and distribution ports
//! (both on loopback), and its own configuration, environment file, enabled-plugins file (no
//! plugins), data and log directories, all in a temporary directory. It runs as this user, so
//! it shares this user's Erlang cookie with `rabbitmqctl` (Debian's `/usr/sbin` wrappers would
//! switch to the `rabbitmq` user and its cookie, so the scripts are called directly).
//!
//! [`PrivateRabbit::restart`] stops the node for real (`rabbitmqctl stop`: the Erlang VM exits)
//! and boots it again on the same data directory, so durable queues and persistent messages
//! come back as they would in production; [`PrivateRabbit::restart_with`] can stop it with
//! SIGTERM instead, and run something while it is down. Dropping it stops the node (killing
//! the VM if it does not stop) and removes the directory, so a failed test leaves nothing
//! running.
//!
//! The node starts in the test's process group: if the test process is interrupted (Ctrl-C),
//! or terminated by nextest's timeout (which signals the test's process group), the node gets
//! the signal too and stops. Only a SIGKILL of the test process alone would leave it running
//! (and its directory, `$TMPDIR/sbtest-*`, behind).
//!
//! Timings here (2 cores, idle): boot 3.3-3.9 s, `rabbitmqctl stop` 2.5 s, SIGTERM stop 1.1 s.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a boot may take (3.3-3.9 s here; more when the machine is busy).
const BOOT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop may take before the VM is killed (1-2.5 s here).
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// How a restart stops the node. Both are graceful stops of the whole node (the VM exits).
#[derive(Clone, Copy, Debug)]
#[allow(dead_code)] // `Ctl` is what `restart` and `Drop` use
pub enum Stop {
    /// `rabbitmqctl stop`: the CLI starts (about 0.4 s of CPU here) before the node begins to
    /// stop, and returns once the VM has exited.
    Ctl,
    /// SIGTERM to the Erlang VM, as `systemctl stop` or `docker stop` do: the node begins to
    /// stop at once.
    Sigterm,
}

pub struct PrivateRabbit {
    node: String,
    port: u16,
    /// The TLS listener's port, when the node has one.
    ssl_port: Option<u16>,
    dist_port: u16,
    dir: PathBuf,
    /// The `rabbitmq-server` script (a shell that runs the VM and waits for it).
    server: Option<Child>,
    /// The Erlang VM's OS pid, from the pid file once booted.
    vm_pid: Option<u32>,
}

/// Debian installs the real scripts here; its `/usr/sbin` wrappers `su` to the `rabbitmq` user.
fn script(name: &str) -> PathBuf {
    let debian = Path::new("/usr/lib/rabbitmq/bin").join(name);
    if debian.exists() {
        debian
    } else {
        PathBuf::from(name)
    }
}

/// A port that is free on loopback now, below the ephemeral range (32768 and up on Linux), so
/// that no outgoing connection takes it while the node is down between a stop and a boot.
fn free_listen_port(not: u16) -> u16 {
    loop {
        let port: u16 = rand::random_range(20_000..32_000);
        if port != not && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Runs `command`, killing it when it takes longer than `timeout`.
fn run_with_timeout(command: &mut Command, timeout: Duration) -> Option<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

impl PrivateRabbit {
    /// Boots a new node and waits until it has fully started.
    pub fn start() -> PrivateRabbit {
        PrivateRabbit::start_with(None)
    }

    /// Like [`PrivateRabbit::start`], with a TLS listener too, using the test CA and server
    /// certificate, and requiring a client certificate signed by that CA.
    pub fn start_with_tls(certificates: &crate::tls_support::Certificates) -> PrivateRabbit {
        PrivateRabbit::start_with(Some(certificates))
    }

    fn start_with(tls: Option<&crate::tls_support::Certificates>) -> PrivateRabbit {
        let name = crate::helpers::unique("sbtest");
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_listen_port(0);
        let dist_port = free_listen_port(port);
        // Only loopback listeners (the shared node's /etc/rabbitmq/rabbitmq.conf is not read).
        let mut conf = format!("listeners.tcp.default = 127.0.0.1:{port}\n");
        let ssl_port = tls.map(|certificates| {
            let ssl_port = loop {
                let candidate = free_listen_port(port);
                if candidate != dist_port {
                    break candidate;
                }
            };
            conf += &format!(
                "listeners.ssl.default = 127.0.0.1:{ssl_port}\n\
                 ssl_options.cacertfile = {}\nssl_options.certfile = {}\n\
                 ssl_options.keyfile = {}\nssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n",
                certificates.ca().display(),
                certificates.path("server.pem").display(),
                certificates.path("server-key.pem").display(),
            );
            ssl_port
        });
        std::fs::write(dir.join("rabbitmq.conf"), conf).unwrap();
        // Replaces /etc/rabbitmq/rabbitmq-env.conf, which names the shared node.
        std::fs::write(
            dir.join("rabbitmq-env.conf"),
            "ERL_EPMD_ADDRESS=127.0.0.1\n",
        )
        .unwrap();
        // No plugins. (RABBITMQ_ENABLED_PLUGINS="" works too on 3.10, but the node then writes
        // "[]." into the enabled-plugins file, /etc/rabbitmq/enabled_plugins by default.)
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        let mut node = PrivateRabbit {
            node: format!("{name}@localhost"),
            port,
            ssl_port,
            dist_port,
            dir,
            server: None,
            vm_pid: None,
        };
        let started = Instant::now();
        node.boot();
        eprintln!(
            "private RabbitMQ node {} up on port {port} in {:.1?}",
            node.node,
            started.elapsed()
        );
        node
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The TLS listener's URL for `user` on `vhost` (URL-encoded already).
    pub fn amqps_url(&self, user: &str, password: &str, vhost: &str) -> String {
        let port = self.ssl_port.expect("started with TLS");
        format!("amqps://{user}:{password}@127.0.0.1:{port}/{vhost}")
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Stops the node with `rabbitmqctl stop` (the VM exits) and boots it again on the same
    /// data.
    #[allow(dead_code)] // the restart test needs a pause in between: `restart_with`
    pub fn restart(&mut self) {
        self.restart_with(Stop::Ctl, || {});
    }

    /// Like [`PrivateRabbit::restart`], stopping the node as `how` says, and running
    /// `while_down` once it has stopped and before it boots again; returns what `while_down`
    /// returns.
    pub fn restart_with<T>(&mut self, how: Stop, while_down: impl FnOnce() -> T) -> T {
        let stopping = Instant::now();
        self.stop_by(how);
        let stopped = stopping.elapsed();
        let result = while_down();
        let booting = Instant::now();
        self.boot();
        eprintln!(
            "private RabbitMQ node {} restarted: stopped in {stopped:.1?}, booted in {:.1?}",
            self.node,
            booting.elapsed()
        );
        result
    }

    /// `rabbitmqctl -n <node> <args>`, killed after 30 s.
    pub fn ctl(&self, args: &[&str]) -> Output {
        self.try_ctl(args, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("rabbitmqctl {args:?} did not finish within 30 s"))
    }

    fn try_ctl(&self, args: &[&str], timeout: Duration) -> Option<Output> {
        run_with_timeout(
            Command::new(script("rabbitmqctl"))
                .args(["-n", &self.node])
                .args(args),
            timeout,
        )
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("log").join(format!("{}.log", self.node)))
            .unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(lines).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("rabbitmq.pid")
    }

    fn boot(&mut self) {
        assert!(self.server.is_none(), "the node is running already");
        let output = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.out"))
            .unwrap();
        let server = Command::new(script("rabbitmq-server"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env(
                "RABBITMQ_CONFIG_FILES",
                self.dir.join("conf.d").join("*.conf"),
            )
            .env(
                "RABBITMQ_ADVANCED_CONFIG_FILE",
                self.dir.join("advanced.config"),
            )
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                self.dir.join("enabled_plugins"),
            )
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.pid_file())
            .env_remove("RABBITMQ_ENABLED_PLUGINS")
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("rabbitmq-server starts");
        self.server = Some(server);
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(status) = self.server.as_mut().unwrap().try_wait().unwrap() {
                self.server = None;
                let output = std::fs::read_to_string(self.dir.join("server.out"));
                panic!(
                    "the private RabbitMQ node {} exited while booting ({status}):\n{}\n{}",
                    self.node,
                    self.log_tail(30),
                    output.unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the private RabbitMQ node {} did not start within {BOOT_TIMEOUT:?}; log tail:\n{}",
                self.node,
                self.log_tail(30)
            );
            // The distribution listener opens early in the boot; before it, the CLI cannot
            // reach the node at all (and every attempt costs a CLI start, about 0.4 s of CPU).
            if accepts(self.dist_port) {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let timeout = remaining.as_secs().max(1).to_string();
                let awaited = self.try_ctl(
                    &["await_startup", "--timeout", &timeout],
                    remaining + Duration::from_secs(5),
                );
                if awaited.is_some_and(|o| o.status.success()) {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            accepts(self.port),
            "the private node {} started but does not accept AMQP connections on {}",
            self.node,
            self.port
        );
        self.vm_pid = self.read_vm_pid();
    }

    /// Stops the node gracefully (`rabbitmqctl stop`), and kills the VM if that does not
    /// work. Does nothing if the node is not running.
    pub fn stop(&mut self) {
        self.stop_by(Stop::Ctl);
    }

    fn stop_by(&mut self, how: Stop) {
        let Some(mut server) = self.server.take() else {
            return;
        };
        let exited = |server: &mut Child, within: Duration| {
            let deadline = Instant::now() + within;
            loop {
                if let Ok(Some(_)) = server.try_wait() {
                    return true;
                }
                if Instant::now() >= deadline {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        };
        let mut stopped = false;
        if let (Stop::Sigterm, Some(pid)) = (how, self.vm_pid) {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            stopped = exited(&mut server, STOP_TIMEOUT);
        }
        if !stopped {
            // `stop <pid file>` returns once the VM has exited.
            let pid_file = self.pid_file();
            let ctl = self.try_ctl(&["stop", pid_file.to_str().unwrap()], STOP_TIMEOUT);
            if !ctl.as_ref().is_some_and(|o| o.status.success()) {
                eprintln!(
                    "rabbitmqctl stop failed for {}: {ctl:?}; killing the VM",
                    self.node
                );
            }
            exited(&mut server, Duration::from_secs(10));
        }
        // Whatever happened above, leave no VM behind (also when a boot failed half-way,
        // before its pid was known).
        if let Some(pid) = self.vm_pid.take().or_else(|| self.read_vm_pid()) {
            let command = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&command).contains("beam") {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        let _ = server.kill();
        let _ = server.wait();
    }

    fn read_vm_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|pid| pid.trim().parse().ok())
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        if std::thread::panicking() && self.server.is_some() {
            eprintln!(
                "log tail of the private RabbitMQ node {}:\n{}",
                self.node,
                self.log_tail(40)
            );
        }
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
