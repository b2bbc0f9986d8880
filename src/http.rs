//! `/metrics`, `/healthz` and `/readyz` over a deliberately tiny HTTP/1.1 server: three GET
//! routes do not justify a web framework in a worker's dependency tree.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::backlog::Backlog;

/// What `/readyz` reports: connected to the broker and Redis, and consuming.
#[derive(Debug, Default)]
pub struct Readiness {
    broker: AtomicBool,
    redis: AtomicBool,
    consuming: AtomicBool,
}

impl Readiness {
    pub fn set_broker(&self, up: bool) {
        self.broker.store(up, Ordering::Relaxed);
        self.publish();
    }

    pub fn set_redis(&self, up: bool) {
        self.redis.store(up, Ordering::Relaxed);
        self.publish();
    }

    pub fn set_consuming(&self, up: bool) {
        self.consuming.store(up, Ordering::Relaxed);
        self.publish();
    }

    pub fn is_ready(&self) -> bool {
        self.broker.load(Ordering::Relaxed)
            && self.redis.load(Ordering::Relaxed)
            && self.consuming.load(Ordering::Relaxed)
    }

    fn describe(&self) -> String {
        let flag = |b: &AtomicBool| {
            if b.load(Ordering::Relaxed) {
                "up"
            } else {
                "down"
            }
        };
        format!(
            "broker: {}\nredis: {}\nconsuming: {}\n",
            flag(&self.broker),
            flag(&self.redis),
            flag(&self.consuming)
        )
    }

    fn publish(&self) {
        crate::telemetry::ready(self.is_ready());
    }
}

/// Serves until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    backlog: Arc<Backlog>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let metrics = metrics.clone();
        let backlog = backlog.clone();
        let readiness = readiness.clone();
        tokio::spawn(async move {
            let _ = respond(stream, &metrics, &backlog, &readiness).await;
        });
    }
}

async fn respond(
    mut stream: TcpStream,
    metrics: &PrometheusHandle,
    backlog: &Backlog,
    readiness: &Readiness,
) -> std::io::Result<()> {
    let mut buffer = [0u8; 2048];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buffer))
        .await
        .unwrap_or(Ok(0))?;
    let request = String::from_utf8_lossy(&buffer[..read]);
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4",
            metrics.render() + &backlog.render().await,
        ),
        ("GET", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET", "/readyz") if readiness.is_ready() => {
            ("200 OK", "text/plain", readiness.describe())
        }
        ("GET", "/readyz") => (
            "503 Service Unavailable",
            "text/plain",
            readiness.describe(),
        ),
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "method not allowed\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
