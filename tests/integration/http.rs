//! The HTTP endpoints as a prober or a scraper meets them: a request split across many TCP
//! writes gets the right answer, unknown routes 404, other methods 405, an oversized head 431,
//! a head never finished is dropped, `/readyz` says 503 while Redis is down, and port 0 takes a
//! free port that the worker logs.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use switchboard::backlog::Backlog;
use switchboard::http::{serve, Readiness};

use crate::helpers::{http_get, store, worker_command, Env, PrivateRedis, WorkerProcesses};

/// The HTTP server alone, with a readiness the test sets.
async fn server() -> (SocketAddr, Arc<Readiness>, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let readiness = Arc::new(Readiness::default());
    let shutdown = CancellationToken::new();
    tokio::spawn(serve(
        listener,
        switchboard::telemetry::init_metrics(),
        Arc::new(Backlog::new(
            store().await,
            Arc::new(switchboard::clock::SystemClock),
        )),
        readiness.clone(),
        shutdown.clone(),
    ));
    (addr, readiness, shutdown)
}

/// Sends `pieces` as separate writes, a pause between them, and reads the whole answer.
async fn send_in_pieces(addr: SocketAddr, pieces: &[&[u8]]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    for piece in pieces {
        stream.write_all(piece).await.unwrap();
        stream.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn whole_requests_are_read_and_only_the_three_routes_answer() {
    if crate::tls_support::second_pass() {
        return;
    }
    let (addr, readiness, shutdown) = server().await;
    let request =
        b"GET /readyz HTTP/1.1\r\nHost: switchboard\r\nUser-Agent: kube-probe/1.31\r\n\r\n";
    let pieces: Vec<&[u8]> = request.chunks(3).collect();
    let answer = send_in_pieces(addr, &pieces).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("broker: down\nredis: down\nconsuming: down"),
        "{answer}"
    );
    readiness.set_broker(true);
    readiness.set_redis(true);
    readiness.set_consuming(true);
    let answer = send_in_pieces(addr, &pieces).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let metrics = send_in_pieces(
        addr,
        &[b"GET /met", b"rics HTTP/1.1\r\nHo", b"st: x\r\n\r\n"],
    )
    .await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("text/plain; version=0.0.4"), "{metrics}");
    let healthz = http_get(addr, "/healthz").await.unwrap();
    assert!(
        healthz.starts_with("HTTP/1.1 200") && healthz.ends_with("ok\n"),
        "{healthz}"
    );
    for path in ["/", "/metricsx", "/readyz/extra", "/../etc/passwd"] {
        let answer = http_get(addr, path).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
    }
    let post = send_in_pieces(
        addr,
        &[b"POST /readyz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"],
    )
    .await;
    assert!(
        post.starts_with("HTTP/1.1 405") && post.contains("allow: GET, HEAD"),
        "{post}"
    );

    // A head larger than the bound is refused, not buffered.
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = send_in_pieces(addr, &[big.as_bytes()]).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    // A head that never ends is dropped after the header timeout (5 s).
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the unfinished request is still open after 10 s"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    shutdown.cancel();
}

#[tokio::test]
async fn readyz_is_503_while_redis_is_down() {
    if crate::tls_support::second_pass() {
        return;
    }
    let mut redis = PrivateRedis::start();
    let env = Env::on_redis(&redis).await;
    let worker = env.spawn_worker().await;
    assert!(http_get(worker.http_addr, "/readyz")
        .await
        .unwrap()
        .starts_with("HTTP/1.1 200"));
    redis.kill();
    let deadline = Instant::now() + Duration::from_secs(15);
    let answer = loop {
        let answer = http_get(worker.http_addr, "/readyz").await.unwrap();
        if answer.starts_with("HTTP/1.1 503") || Instant::now() > deadline {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("redis: down"), "{answer}");
    redis.restart();
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test]
async fn port_zero_takes_a_free_port_and_the_worker_logs_it() {
    if crate::tls_support::second_pass() {
        return;
    }
    let env = Env::new().await;
    let mut child = worker_command(env!("CARGO_BIN_EXE_switchboard"), &env.config, 0)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let worker = WorkerProcesses::of(vec![child]);
    let mut lines = BufReader::new(stderr).lines();
    let starting = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("worker starting"))
        .expect("a 'worker starting' line");
    let addr: SocketAddr = starting
        .split_whitespace()
        .find_map(|field| field.strip_prefix("http="))
        .expect("the line names the address")
        .parse()
        .unwrap();
    assert_ne!(addr.port(), 0);
    let healthz = http_get(addr, "/healthz").await;
    drop(worker);
    assert!(healthz.unwrap().starts_with("HTTP/1.1 200"));
    env.cleanup().await;
}
