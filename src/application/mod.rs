//! A running worker: the consumer loop with reconnection (`consume`), the HTTP server, and the
//! Redis connection and its watcher (`redis`).

mod consume;
mod redis;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backlog::Backlog;
use crate::clock::Clock;
use crate::config::{Config, SettingError};
use crate::http::{self, Readiness};
use crate::store::confirmations::Confirmations;
use crate::store::StoreOptions;
use crate::telemetry;
use crate::worker::Worker;

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
        let store = redis::connect(&config, options).await;
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
                backlog: Arc::new(Backlog::new(store.clone(), clock.clone())),
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
        background.spawn(redis::watch(self.worker.clone()));
        let consuming = tokio::spawn(consume::run(self.worker.clone(), self.consumer_tag));
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
