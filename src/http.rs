//! `/metrics`, `/healthz` and `/readyz`, served by hyper: whole requests are read however the
//! bytes arrive, the request head is bounded in size (a larger one gets 431) and in time (a
//! client that does not finish it in time is dropped), and anything but those three GET routes
//! is answered 404 or 405.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backlog::Backlog;

/// The largest request head read (hyper's smallest buffer): a probe's or a scraper's GET is a
/// few hundred bytes.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// How long a client may take to send a request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection may keep answering after shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// What `/readyz` reports: connected to the broker and Redis, consuming, not blocked from
/// publishing by a broker's resource alarm, and not waiting on publishes the broker refused.
#[derive(Debug, Default)]
pub struct Readiness {
    broker: AtomicBool,
    redis: AtomicBool,
    consuming: AtomicBool,
    /// The broker blocks this worker's publishing (see `broker::Blocking`): its decisions
    /// cannot reach the platform.
    broker_blocked: AtomicBool,
    /// Publishes the broker refused (nacked) that the worker is trying again (see
    /// `Worker::publish`), each held by a [`RefusedPublish`]: a count, not a flag, since
    /// several batches publish at once and one that gets through says nothing of another
    /// still refused.
    refused_publishes: AtomicUsize,
}

/// A publish the broker refused, retried until dropped (published at last, or given up): the
/// worker is not ready meanwhile.
pub struct RefusedPublish(Arc<Readiness>);

impl Drop for RefusedPublish {
    fn drop(&mut self) {
        self.0.refused_publishes.fetch_sub(1, Ordering::Relaxed);
        self.0.publish();
    }
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

    pub fn set_broker_blocked(&self, blocked: bool) {
        self.broker_blocked.store(blocked, Ordering::Relaxed);
        self.publish();
    }

    /// Counts a publish the broker refused until the returned guard is dropped.
    pub fn publish_refused(self: &Arc<Self>) -> RefusedPublish {
        self.refused_publishes.fetch_add(1, Ordering::Relaxed);
        self.publish();
        RefusedPublish(self.clone())
    }

    pub fn is_ready(&self) -> bool {
        self.broker.load(Ordering::Relaxed)
            && !self.broker_blocked.load(Ordering::Relaxed)
            && self.refused_publishes.load(Ordering::Relaxed) == 0
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
        let up = self.broker.load(Ordering::Relaxed);
        let broker = if up && self.broker_blocked.load(Ordering::Relaxed) {
            "blocked (resource alarm)"
        } else if up && self.refused_publishes.load(Ordering::Relaxed) > 0 {
            "refusing publishes (a full queue?), retrying"
        } else {
            flag(&self.broker)
        };
        format!(
            "broker: {broker}\nredis: {}\nconsuming: {}\n",
            flag(&self.redis),
            flag(&self.consuming)
        )
    }

    fn publish(&self) {
        crate::telemetry::ready(self.is_ready());
    }
}

/// What the routes answer from.
struct Routes {
    metrics: PrometheusHandle,
    backlog: Arc<Backlog>,
    readiness: Arc<Readiness>,
}

/// Serves until `shutdown` is cancelled, then lets the requests in progress finish (for a
/// short grace period) and returns.
pub async fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    backlog: Arc<Backlog>,
    readiness: Arc<Readiness>,
    shutdown: CancellationToken,
) {
    let routes = Arc::new(Routes {
        metrics,
        backlog,
        readiness,
    });
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "HTTP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let routes = routes.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let routes = routes.clone();
                async move { Ok::<_, Infallible>(routes.answer(request).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD_BYTES)
                // One request per connection, closed after the answer, as before: probes and
                // scrapes come seconds apart, and a client that reads to the end of the stream
                // gets its answer at once instead of after an idle timeout.
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection).await;
                }
            }
        });
    }
    connections.close();
    connections.wait().await;
}

impl Routes {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match request.uri().path() {
            "/metrics" => {
                crate::telemetry::runtime_threads();
                let body = self.metrics.render() + &self.backlog.render().await;
                let mut response = text(StatusCode::OK, body);
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4"),
                );
                response
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" if self.readiness.is_ready() => {
                text(StatusCode::OK, self.readiness.describe())
            }
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, self.readiness.describe()),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}
