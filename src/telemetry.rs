//! Logs and metrics set-up, and the typed internal events that emit both.
//!
//! Each internal event writes one log line and updates its metrics together (the pattern of
//! Vector's `internal_events`), so a dashboard and a log search always tell the same story.
//! Nothing here logs a URL with its password or an event body.

use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

use crate::contract::OutboundEvent;
use crate::store::Outcome;

/// Installs the global tracing subscriber: `RUST_LOG` filters, else `default_level` for
/// Switchboard's own lines (`info` for a worker, `warn` for the CLI tools).
pub fn init_logging(format: &str, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(format!("{default_level},lapin=warn,amq_protocol=warn"))
    });
    let registry = tracing_subscriber::registry().with(filter);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let result = if format == "json" {
        registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                fmt::layer()
                    .with_target(false)
                    .with_ansi(ansi)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
    // A second initialisation (tests spawning several workers) keeps the first subscriber.
    let _ = result;
}

/// Installs the Prometheus recorder once per process and returns its handle.
pub fn init_metrics() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("switchboard_decision_seconds".into()),
                    &[
                        0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0,
                    ],
                )
                .expect("static buckets are valid")
                .set_buckets_for_metric(
                    Matcher::Full("switchboard_batch_events".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
                )
                .expect("static buckets are valid")
                .install_recorder()
                .expect("the metrics recorder is installed once")
        })
        .clone()
}

/// An inbound event was handled (applied, replayed, or found a duplicate or stale) and its
/// outputs confirmed by the broker.
pub struct EventApplied<'a> {
    pub project: &'a str,
    pub event_id: &'a str,
    pub event_type: &'static str,
    pub conversation_id: Option<&'a str>,
    pub outcome: Outcome,
    pub decision: Duration,
    pub outputs: &'a [OutboundEvent],
}

impl EventApplied<'_> {
    pub fn emit(&self) {
        let outcome = self.outcome.label();
        let replayed = self.outcome == Outcome::Replayed;
        counter!("switchboard_events_total", "type" => self.event_type, "outcome" => outcome)
            .increment(1);
        histogram!("switchboard_decision_seconds").record(self.decision.as_secs_f64());
        for output in self.outputs {
            let reason = output.data["reason"].as_str().unwrap_or("").to_string();
            match output.event_type.as_str() {
                "conversation.assigned" => {
                    counter!("switchboard_assignments_total", "reason" => reason).increment(1)
                }
                "conversation.queued" => {
                    counter!("switchboard_queued_total", "reason" => reason).increment(1)
                }
                _ => {}
            }
            tracing::info!(
                project = self.project,
                event_id = self.event_id,
                output = output.event_type.as_str(),
                conversation_id = output.data["conversation_id"].as_str(),
                agent_id = output.data["agent_id"].as_str(),
                reason = output.data["reason"].as_str(),
                replayed,
                "decision"
            );
        }
        tracing::debug!(
            project = self.project,
            event_id = self.event_id,
            event_type = self.event_type,
            conversation_id = self.conversation_id,
            outcome,
            decision_us = self.decision.as_micros() as u64,
            "event applied"
        );
    }
}

/// An inbound event went to dead letters.
pub struct EventDeadLettered<'a> {
    pub kind: &'static str,
    pub reason: &'a str,
    pub event_type: Option<&'a str>,
    pub project: Option<&'a str>,
    pub event_id: Option<&'a str>,
}

impl EventDeadLettered<'_> {
    pub fn emit(&self) {
        counter!("switchboard_dead_letters_total", "kind" => self.kind).increment(1);
        counter!("switchboard_events_total",
            "type" => self.event_type.map(known_type).unwrap_or("unknown"),
            "outcome" => "rejected")
        .increment(1);
        tracing::warn!(
            kind = self.kind,
            reason = self.reason,
            project = self.project,
            event_id = self.event_id,
            "event dead-lettered"
        );
    }
}

/// Metric labels take only contract types, so a hostile `type` cannot grow the label set.
fn known_type(event_type: &str) -> &'static str {
    crate::contract::inbound::INBOUND_TYPES
        .iter()
        .find(|t| **t == event_type)
        .copied()
        .unwrap_or("unknown")
}

/// Redis could not apply an event now; the worker keeps it and tries again.
pub struct StoreUnavailable<'a> {
    pub error: &'a dyn std::fmt::Display,
    pub retry_in: Duration,
}

impl StoreUnavailable<'_> {
    pub fn emit(&self) {
        counter!("switchboard_events_total", "type" => "any", "outcome" => "failed").increment(1);
        tracing::warn!(error = %self.error, retry_in_ms = self.retry_in.as_millis() as u64,
            "Redis unavailable; holding the event and retrying");
    }
}

/// The broker refused (nacked) messages the worker published: a queue that rejects publishes
/// when full (`x-overflow: reject-publish`), a quorum queue short of its quorum. No fault of
/// the events: they are held unacked and the refused messages published again.
pub struct PublishRefused<'a> {
    /// What was refused: outputs, a dead letter, a timer sent on.
    pub what: &'a str,
    pub messages: usize,
    pub retry_in: Duration,
}

impl PublishRefused<'_> {
    pub fn emit(&self) {
        counter!("switchboard_publishes_refused_total").increment(self.messages as u64);
        tracing::warn!(
            messages = self.messages,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "the broker refused {} (a full queue that rejects publishes, or one short of \
             its quorum); holding the events and publishing again",
            self.what
        );
    }
}

/// A (re)connection to a dependency.
pub struct Reconnecting<'a> {
    pub target: &'static str,
    pub error: &'a dyn std::fmt::Display,
    pub retry_in: Duration,
}

impl Reconnecting<'_> {
    pub fn emit(&self) {
        counter!("switchboard_reconnects_total", "target" => self.target).increment(1);
        tracing::warn!(target_service = self.target, error = %self.error,
            retry_in_ms = self.retry_in.as_millis() as u64, "connection lost; reconnecting");
    }
}

/// A dependency refused this worker: credentials, permissions or certificates. Unlike an
/// outage it does not heal by itself, so each retry (slow) says so at error level.
pub struct ConnectionRefused<'a> {
    pub target: &'static str,
    pub error: &'a dyn std::fmt::Display,
    pub retry_in: Duration,
}

impl ConnectionRefused<'_> {
    pub fn emit(&self) {
        counter!("switchboard_reconnects_total", "target" => self.target).increment(1);
        tracing::error!(target_service = self.target, error = %self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "refused: check the credentials, permissions and certificates; retrying");
    }
}

/// How Redis makes room when it is full, read when it changes (see `store::eviction`): any
/// policy but `noeviction` can delete what Switchboard keeps without an error anywhere, so it
/// is said at error level, and `switchboard_redis_evicts_keys` stays 1 until it is fixed.
pub struct RedisEvictionPolicy<'a> {
    /// Each node's `maxmemory-policy`.
    pub policies: &'a [String],
    /// Whether any of them lets Redis delete keys.
    pub evicts: bool,
}

impl RedisEvictionPolicy<'_> {
    pub fn emit(&self) {
        gauge!("switchboard_redis_evicts_keys").set(if self.evicts { 1.0 } else { 0.0 });
        let policy = self.policies.join(",");
        if self.evicts {
            tracing::error!(maxmemory_policy = %policy,
                "Redis deletes keys when it is full: agents' loads and events' records can \
                 vanish, and capacity or exactly-once with them; set maxmemory-policy noeviction");
        } else {
            tracing::info!(maxmemory_policy = %policy, "Redis keeps every key when it is full");
        }
    }
}

/// Redis does not let this worker read its eviction policy (`INFO` refused to its ACL user):
/// whether Redis may delete what Switchboard keeps is unchecked, said once at warning level
/// (again only after the policy could be read in between). `switchboard_redis_evicts_keys` is
/// left as it was: unset, unless an earlier reading set it.
pub struct RedisEvictionPolicyUnread<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl RedisEvictionPolicyUnread<'_> {
    pub fn emit(&self) {
        tracing::warn!(error = %self.error,
            "cannot read Redis's maxmemory-policy (INFO memory): whether Redis deletes keys \
             when it is full is unchecked; allow INFO to this user, or make sure the policy \
             is noeviction");
    }
}

/// The broker blocks this worker's connection from publishing (a RabbitMQ memory or disk
/// alarm): decisions wait unpublished, and events unacked, until it unblocks. Said at warning
/// level with the broker's reason; `switchboard_broker_blocked` is 1 until [`BrokerUnblocked`].
pub struct BrokerBlocked<'a> {
    pub reason: &'a str,
}

impl BrokerBlocked<'_> {
    pub fn emit(&self) {
        gauge!("switchboard_broker_blocked").set(1.0);
        tracing::warn!(
            reason = self.reason,
            "the broker blocks publishing (a resource alarm): decisions wait unpublished and \
             events unacked until it clears; free memory or disk on the broker"
        );
    }
}

/// The broker lets this worker publish again (its alarm cleared, or a new connection).
/// `said`: it was blocked, and the line says so; a new connection only resets the gauge.
pub struct BrokerUnblocked {
    pub said: bool,
}

impl BrokerUnblocked {
    pub fn emit(&self) {
        gauge!("switchboard_broker_blocked").set(0.0);
        if self.said {
            tracing::info!("the broker unblocked publishing: decisions go out again");
        }
    }
}

/// Events being processed right now.
pub fn in_flight(delta: f64) {
    gauge!("switchboard_in_flight_events").increment(delta);
}

/// Whether this worker is connected and consuming.
pub fn ready(ready: bool) {
    gauge!("switchboard_ready").set(if ready { 1.0 } else { 0.0 });
}

/// The worker threads of the async runtime this worker runs on (`SWITCHBOARD_WORKER_THREADS`
/// for `switchboard run`): what an operator checks the setting took effect by.
pub fn runtime_threads() {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        gauge!("switchboard_runtime_threads").set(runtime.metrics().num_workers() as f64);
    }
}

/// How many events arrived together and were handled as one batch.
pub fn batch(events: usize) {
    histogram!("switchboard_batch_events").record(events as f64);
}
