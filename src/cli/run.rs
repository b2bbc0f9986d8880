//! `switchboard run`: a worker until SIGTERM or SIGINT.

use std::sync::Arc;

use crate::application::Application;
use crate::clock::SystemClock;
use crate::config::Config;

pub async fn run(config: Config) -> anyhow::Result<()> {
    let application = Application::build(config, Arc::new(SystemClock)).await?;
    application.run_until_stopped(stop_signal()).await
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn stop_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler can be installed");
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
