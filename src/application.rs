//! A running worker: the consumer loop with reconnection, the HTTP server and a Redis watcher.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backlog::Backlog;
use crate::broker::Session;
use crate::clock::Clock;
use crate::config::{Config, SettingError};
use crate::http::{self, Readiness};
use crate::store::confirmations::Confirmations;
use crate::store::{Store, StoreOptions};
use crate::telemetry::{self, ConnectionRefused, Reconnecting};
use crate::worker::{DeliveryContext, Worker};

/// A worker, built and ready to run.
pub struct Application {
    worker: Arc<Worker>,
    /// Writes the worker's confirmations; awaited once the worker has stopped consuming.
    confirming: tokio::task::JoinHandle<()>,
    listener: TcpListener,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
    consumer_tag: String,
}

impl Application {
    /// Checks the TLS files, binds the HTTP address and connects to Redis (a single node
    /// lazily, so a worker started while Redis is down waits for it instead of failing). A
    /// setting that cannot work is a [`SettingError`].
    pub async fn build(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Application> {
        let metrics = telemetry::init_metrics();
        config.tls_files().load()?;
        let listener = TcpListener::bind(&config.http_addr)
            .await
            .map_err(|error| {
                SettingError::new(
                    "http_addr",
                    format!("cannot listen on {}: {error}", config.http_addr),
                )
            })?;
        let options = StoreOptions::from_config(&config);
        let store = connect_store(&config, options).await;
        tracing::info!(
            amqp = %config.amqp_url.redacted(),
            redis = %config.redis_url.redacted(),
            tls_ca_file = ?config.tls_ca_file,
            tls_cert_file = ?config.tls_cert_file,
            http = %listener.local_addr()?,
            queue = config.work_queue,
            prefetch = config.prefetch,
            "worker starting"
        );
        let consumer_tag = format!("switchboard-{}", uuid::Uuid::new_v4().simple());
        let (confirmations, confirming) = Confirmations::start(store.clone());
        Ok(Application {
            confirming,
            worker: Arc::new(Worker {
                confirmations,
                config: Arc::new(config),
                backlog: Arc::new(Backlog::new(store.clone())),
                store,
                clock,
                readiness: Arc::new(Readiness::default()),
                shutdown: CancellationToken::new(),
            }),
            listener,
            metrics,
            consumer_tag,
        })
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The name this worker gives its broker connection (and its consumer tag).
    pub fn connection_name(&self) -> &str {
        &self.consumer_tag
    }

    pub fn readiness(&self) -> Arc<Readiness> {
        self.worker.readiness.clone()
    }

    /// Consumes until `stop` completes, then stops taking events, finishes those in flight and
    /// returns.
    pub async fn run_until_stopped(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let shutdown = self.worker.shutdown.clone();
        let background = TaskTracker::new();
        background.spawn(http::serve(
            self.listener,
            self.metrics,
            self.worker.backlog.clone(),
            self.worker.readiness.clone(),
            shutdown.clone(),
        ));
        background.spawn(watch_redis(self.worker.clone()));
        let consuming = tokio::spawn(consume(self.worker.clone(), self.consumer_tag));
        stop.await;
        tracing::info!("stopping: no new events; finishing those in flight");
        shutdown.cancel();
        consuming.await?;
        self.worker.confirmations.close();
        self.confirming.await?;
        background.close();
        background.wait().await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

async fn connect_store(config: &Config, options: StoreOptions) -> Store {
    let nodes = config.redis_nodes();
    let mut backoff = Duration::from_millis(100);
    loop {
        match Store::connect(&nodes, options.clone()).await {
            Ok(store) => return store,
            Err(error) => {
                let refusal = error.refusal();
                let shown: &dyn std::fmt::Display = match &refusal {
                    Some(why) => why,
                    None => &error,
                };
                backoff = retry_later("redis", shown, refusal.is_some(), backoff);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(max_backoff(refusal.is_some()));
            }
        }
    }
}

/// Keeps `/readyz` honest about Redis while no event is flowing, and says at error level, at
/// a slowing pace, when Redis refuses this worker (credentials, ACL, certificates).
async fn watch_redis(worker: Arc<Worker>) {
    let mut refused_backoff = REFUSED_BACKOFF;
    loop {
        let pinged = worker.store.ping().await;
        worker.readiness.set_redis(pinged.is_ok());
        let pause = match pinged {
            Ok(()) => {
                refused_backoff = REFUSED_BACKOFF;
                Duration::from_secs(5)
            }
            Err(error) if error.is_refusal() => {
                let why = error.refusal().unwrap_or_default();
                let pause = retry_later("redis", &why, true, refused_backoff);
                refused_backoff = (pause * 2).min(max_backoff(true));
                pause
            }
            Err(_) => Duration::from_secs(1),
        };
        tokio::select! {
            _ = worker.shutdown.cancelled() => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// The first wait after a refusal: someone has to act, so retrying at once is only noise.
const REFUSED_BACKOFF: Duration = Duration::from_secs(2);

/// The longest wait between attempts: an outage is retried often, as it may end any moment;
/// a refusal slowly.
fn max_backoff(refused: bool) -> Duration {
    Duration::from_secs(if refused { 30 } else { 5 })
}

/// Says why `target` is retried and returns how long to wait: `backoff`, or at least
/// [`REFUSED_BACKOFF`] after a refusal, which is logged at error level.
fn retry_later(
    target: &'static str,
    error: &dyn std::fmt::Display,
    refused: bool,
    backoff: Duration,
) -> Duration {
    if refused {
        let retry_in = backoff.max(REFUSED_BACKOFF);
        ConnectionRefused {
            target,
            error,
            retry_in,
        }
        .emit();
        retry_in
    } else {
        Reconnecting {
            target,
            error,
            retry_in: backoff,
        }
        .emit();
        backoff
    }
}

/// The consumer loop: open a session, consume until it breaks or the worker stops, repeat.
async fn consume(worker: Arc<Worker>, tag: String) {
    let config = worker.config.clone();
    let shutdown = worker.shutdown.clone();
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let session = tokio::select! {
            _ = shutdown.cancelled() => return,
            opened = Session::open(&config, &tag) => opened,
        };
        let consumer = match session {
            Ok(session) => session
                .consume(&config.work_queue, &tag)
                .await
                .map(|consumer| (session, consumer)),
            Err(error) => Err(error),
        };
        // Opening the session or starting to consume failed: not ready, wait, open anew.
        let (session, mut consumer) = match consumer {
            Ok(opened) => opened,
            Err(error) => {
                worker.readiness.set_broker(false);
                backoff = retry_later("broker", &error, error.is_refusal(), backoff);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(max_backoff(error.is_refusal()));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        worker.readiness.set_broker(true);
        worker.readiness.set_consuming(true);
        tracing::info!(queue = config.work_queue, "consuming");

        let in_flight = TaskTracker::new();
        let context = Arc::new(DeliveryContext {
            publisher: session.publisher(),
            acks: session.acknowledgements(),
            session_failed: CancellationToken::new(),
        });
        // Cancelled when a broken session's events are given up (see below).
        let abandoned = CancellationToken::new();
        // Deliveries that arrived together are handled as one batch; a quiet queue gives
        // batches of one, so nothing waits for a batch to fill.
        let mut batches = (&mut consumer).ready_chunks(config.batch_size.into());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = context.session_failed.cancelled() => break,
                next = batches.next() => {
                    let Some(batch) = next else {
                        let error = "the consumer was cancelled by the broker";
                        Reconnecting { target: "broker", error: &error, retry_in: backoff }.emit();
                        break;
                    };
                    let mut deliveries = Vec::with_capacity(batch.len());
                    let mut failed = None;
                    for delivery in batch {
                        match delivery {
                            Ok(delivery) => deliveries.push(delivery),
                            Err(error) => failed = Some(error),
                        }
                    }
                    // In arrival order, before any of them can be settled.
                    context.acks.received(deliveries.iter().map(|d| d.delivery_tag)).await;
                    if !deliveries.is_empty() {
                        let (worker, context, abandoned) =
                            (worker.clone(), context.clone(), abandoned.clone());
                        let count = deliveries.len() as f64;
                        telemetry::batch(deliveries.len());
                        telemetry::in_flight(count);
                        in_flight.spawn(async move {
                            tokio::select! {
                                _ = worker.handle(deliveries, &context) => {}
                                // Stopping here is like a crash: the broker redelivers the
                                // events and the store replays what was applied.
                                _ = abandoned.cancelled() => {}
                            }
                            telemetry::in_flight(-count);
                        });
                    }
                    if let Some(error) = failed {
                        Reconnecting { target: "broker", error: &error, retry_in: backoff }.emit();
                        break;
                    }
                },
            }
        }
        worker.readiness.set_consuming(false);
        if shutdown.is_cancelled() {
            // Stop deliveries, finish what is in flight (each acks after its outputs are
            // confirmed), then close: anything still unacked is requeued by the broker.
            session.cancel(&tag).await;
            in_flight.close();
            in_flight.wait().await;
            session.close().await;
            worker.readiness.set_broker(false);
            return;
        }
        worker.readiness.set_broker(false);
        // The session is broken: in-flight events cannot be acked on it any more. Drop it; the
        // broker requeues them and they are replayed (not decided again) on redelivery. Those
        // still waiting on the dead connection after a grace period (a confirm or an ack that
        // never resolves) are given up, so no task and no in-flight count outlives its session.
        in_flight.close();
        if tokio::time::timeout(Duration::from_secs(5), in_flight.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                events = in_flight.len(),
                "events of the broken session are given up; the broker redelivers them"
            );
            abandoned.cancel();
            in_flight.wait().await;
        }
        drop(session);
        tokio::time::sleep(backoff).await;
    }
}
