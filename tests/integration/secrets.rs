//! No password in sight: three `switchboard run` processes at debug level, with passwords in
//! both URLs, against a broker and a Redis that accept them, that refuse them, and that cannot
//! be reached. Their logs, `/readyz` and `/metrics` never show a password; refusals are
//! error-level lines, retried slowly, and the worker is not ready meanwhile.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::helpers::{free_port, http_get, readiness_within, unique, PrivateRedis};

/// A broker user with its own vhost on the machine's RabbitMQ, deleted when dropped.
struct BrokerUser {
    user: String,
    password: String,
    vhost: String,
}

fn rabbitmqctl(args: &[&str]) {
    let done = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl");
    assert!(done.status.success(), "rabbitmqctl {args:?}: {done:?}");
}

impl BrokerUser {
    fn create() -> BrokerUser {
        let user = BrokerUser {
            user: unique("u"),
            password: unique("amqp-secret"),
            vhost: unique("vh"),
        };
        rabbitmqctl(&["add_vhost", &user.vhost]);
        rabbitmqctl(&["add_user", &user.user, &user.password]);
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &user.vhost,
            &user.user,
            ".*",
            ".*",
            ".*",
        ]);
        user
    }

    fn url(&self, password: &str, port: u16) -> String {
        format!(
            "amqp://{}:{password}@127.0.0.1:{port}/{}",
            self.user, self.vhost
        )
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &self.user])
            .output();
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
    }
}

/// A `switchboard run` at debug level whose standard error is collected; killed when dropped.
struct Run {
    child: Child,
    http_port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Run {
    fn start(amqp_url: &str, redis_url: &str) -> Run {
        let http_port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("run")
            .env("SWITCHBOARD_AMQP_URL", amqp_url)
            .env("SWITCHBOARD_REDIS_URL", redis_url)
            .env("SWITCHBOARD_HTTP_ADDR", format!("127.0.0.1:{http_port}"))
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("switchboard starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (mut pipe, collected) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            let mut buffer = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                collected
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Run {
            child,
            http_port,
            stderr,
        }
    }

    async fn get(&self, path: &str) -> String {
        let addr = ([127, 0, 0, 1], self.http_port).into();
        for _ in 0..50 {
            if let Some(answer) = http_get(addr, path).await {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no answer on {path}");
    }

    /// What it has written so far.
    fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGTERM, then everything it wrote.
    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(100));
        self.log()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_no_secret(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(!text.contains(secret), "{what} shows a password:\n{text}");
    }
}

fn refusal_lines<'a>(log: &'a str, target: &str) -> Vec<&'a str> {
    log.lines()
        .filter(|l| l.contains("ERROR") && l.contains("refused"))
        .filter(|l| l.contains(&format!("target_service=\"{target}\"")))
        .collect()
}

/// The seconds since midnight at which a log line was written (its RFC 3339 timestamp, as in
/// `2026-12-05T08:59:18.551688Z ...`).
fn written_at(line: &str) -> f64 {
    let time = line
        .split_whitespace()
        .next()
        .and_then(|stamp| stamp.split_once('T'))
        .map(|(_, time)| time.trim_end_matches('Z'))
        .unwrap_or_else(|| panic!("no timestamp in {line}"));
    time.split(':')
        .map(|part| part.parse::<f64>().expect("a timestamp's number"))
        .fold(0.0, |seconds, part| seconds * 60.0 + part)
}

/// The pauses between consecutive lines, in seconds.
fn pauses(lines: &[&str]) -> Vec<f64> {
    lines
        .windows(2)
        .map(|pair| (written_at(pair[1]) - written_at(pair[0])).rem_euclid(86_400.0))
        .collect()
}

#[test]
fn pauses_are_read_from_the_timestamps_even_across_midnight() {
    let lines = [
        "2026-12-05T23:59:58.500000Z ERROR refused",
        "2026-12-06T00:00:00.750000Z ERROR refused",
        "2026-12-06T00:00:04.750000Z ERROR refused",
    ];
    assert_eq!(pauses(&lines), [2.25, 4.0]);
}

#[tokio::test]
async fn no_password_in_logs_metrics_or_answers_whether_accepted_refused_or_unreachable() {
    if crate::tls_support::second_pass() {
        return;
    }
    let broker = BrokerUser::create();
    let redis = PrivateRedis::start();
    let redis_password = unique("redis-secret");
    let acl = Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "ACL", "SETUSER", "sb", "on"])
        .arg(format!(">{redis_password}"))
        .args(["~*", "&*", "+@all"])
        .output()
        .unwrap();
    assert!(acl.status.success(), "{acl:?}");
    let redis_url = |password: &str, port: u16| format!("redis://sb:{password}@127.0.0.1:{port}");
    let (wrong_amqp, wrong_redis) = (unique("amqp-wrong"), unique("redis-wrong"));
    let (gone_amqp, gone_redis) = (unique("amqp-gone"), unique("redis-gone"));
    let closed = free_port();
    let secrets = [
        broker.password.as_str(),
        redis_password.as_str(),
        &wrong_amqp,
        &wrong_redis,
        &gone_amqp,
        &gone_redis,
    ];

    let started = Instant::now();
    let accepted = Run::start(
        &broker.url(&broker.password, 5672),
        &redis_url(&redis_password, redis.port),
    );
    let refused = Run::start(
        &broker.url(&wrong_amqp, 5672),
        &redis_url(&wrong_redis, redis.port),
    );
    let unreachable = Run::start(
        &broker.url(&gone_amqp, closed),
        &redis_url(&gone_redis, closed),
    );
    // How soon a worker connects is not what this test is about, and once, during CI, one
    // took more than 7 s.
    let addr = ([127, 0, 0, 1], accepted.http_port).into();
    if let Err(last) = readiness_within(addr, Duration::from_secs(30)).await {
        panic!("not ready: {last:?}\nits log:\n{}", accepted.log());
    }
    // Long enough for the refused worker to have retried (after 2 s) and for the unreachable
    // one to have retried several times.
    tokio::time::sleep_until((started + Duration::from_secs(7)).into()).await;

    let mut answers = Vec::new();
    for run in [&accepted, &refused, &unreachable] {
        let ready = run.get("/readyz").await;
        let metrics = run.get("/metrics").await;
        assert_no_secret("/readyz", &ready, &secrets);
        assert_no_secret("/metrics", &metrics, &secrets);
        answers.push(ready);
    }
    assert!(answers[0].starts_with("HTTP/1.1 200"), "{}", answers[0]);
    assert!(answers[1].starts_with("HTTP/1.1 503"), "{}", answers[1]);
    assert!(answers[2].starts_with("HTTP/1.1 503"), "{}", answers[2]);

    let logs = [accepted.stop(), refused.stop(), unreachable.stop()];
    for log in &logs {
        assert!(log.contains("DEBUG"), "logs at debug level:\n{log}");
        assert_no_secret("the log", log, &secrets);
    }
    assert!(logs[0].contains("consuming"), "{}", logs[0]);
    // Refusals: an error-level line each time, slowly (2 s, then 4 s, ...), where an outage's
    // backoff would retry after 0.1 s, 0.2 s, ...
    for target in ["broker", "redis"] {
        let lines = refusal_lines(&logs[1], target);
        let pauses = pauses(&lines);
        assert!(
            !pauses.is_empty() && pauses.iter().all(|&pause| pause > 1.5),
            "{target}: refusal lines {pauses:?} s apart:\n{}",
            logs[1]
        );
    }
    assert!(
        refusal_lines(&logs[2], "broker").is_empty(),
        "unreachable is not refused"
    );
    assert!(
        logs[2].contains("connection lost; reconnecting"),
        "{}",
        logs[2]
    );
}
