//! The consumer loop: open a session, dispatch its deliveries until it breaks or the worker
//! stops, drain what is in flight, repeat.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use lapin::message::Delivery;
use lapin::Consumer;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::redis::Reconnection;
use crate::backoff::Backoff;
use crate::broker::{Blocking, BrokerError, Session};
use crate::http::Readiness;
use crate::telemetry::{self, BrokerBlocked, BrokerUnblocked, Reconnecting};
use crate::worker::{DecisionSlot, DeliveryContext, Worker};

/// How long the events of a broken session may take to finish before they are given up.
const BROKEN_SESSION_GRACE: Duration = Duration::from_secs(5);
/// How long opening a session (connecting, declaring the topology, starting to consume) may
/// take before it is tried again: a broker host that went silent once the connection was made
/// would otherwise hold the attempt for ever, ready never and saying nothing, while a retry
/// may reach its successor (a managed broker's failover moves its name to another host).
/// Twice the heartbeat, after which an open connection would be given up too.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping worker waits for its events in flight (their confirms and acks) and for
/// the broker to see it go, before it leaves them to the broker: a broker that blocks
/// publishing stops reading from the connection altogether, and would hold the stop for as
/// long as its alarm lasts. Well within a container's usual 30 s between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Consumes until the worker stops.
pub async fn run(worker: Arc<Worker>, tag: String) {
    let mut reconnection = Reconnection::new("broker");
    while let Some((session, consumer)) = open(&worker, &tag, &mut reconnection).await {
        reconnection.succeeded();
        // Nothing is published before the first delivery: no notice is missed.
        let blocking = tokio::spawn(watch_blocking(
            session.blocking_notices(),
            worker.readiness.clone(),
        ));
        let in_flight = TaskTracker::new();
        let context = Arc::new(DeliveryContext {
            publisher: session.publisher(),
            acks: session.acknowledgements(),
            session_failed: CancellationToken::new(),
        });
        // Cancelled when a broken session's events are given up (see `drain`).
        let abandoned = CancellationToken::new();
        dispatch(
            &worker,
            consumer,
            &context,
            &in_flight,
            &abandoned,
            &reconnection,
        )
        .await;
        worker.readiness.set_consuming(false);
        let stopping = worker.shutdown.is_cancelled();
        drain(&worker, session, &tag, in_flight, abandoned, stopping).await;
        // A new connection starts unblocked; the broker blocks it again if its alarm lasts.
        blocking.abort();
        worker.readiness.set_broker_blocked(false);
        if stopping || !Backoff::wait(reconnection.next_outage_delay(), &worker.shutdown).await {
            return;
        }
    }
}

/// Follows what the broker says of one session's publishing (see `broker::Blocking`): while it
/// blocks it, the worker is not ready and says why once; when it unblocks, it says so.
async fn watch_blocking(notices: impl Stream<Item = Blocking>, readiness: Arc<Readiness>) {
    BrokerUnblocked { said: false }.emit();
    let mut notices = std::pin::pin!(notices);
    let mut blocked = false;
    while let Some(notice) = notices.next().await {
        match notice {
            Blocking::Blocked(reason) if !blocked => {
                BrokerBlocked { reason: &reason }.emit();
                blocked = true;
            }
            Blocking::Unblocked if blocked => {
                BrokerUnblocked { said: true }.emit();
                blocked = false;
            }
            _ => continue,
        }
        readiness.set_broker_blocked(blocked);
    }
}

/// Opens a session and starts consuming, retrying (not ready meanwhile) until it works or the
/// worker stops (`None`).
async fn open(
    worker: &Worker,
    tag: &str,
    reconnection: &mut Reconnection,
) -> Option<(Session, Consumer)> {
    let config = &worker.config;
    loop {
        let consuming = async {
            let session = Session::open(config, tag).await?;
            let consumer = session.consume(&config.work_queue, tag).await?;
            Ok((session, consumer))
        };
        let consuming = tokio::select! {
            _ = worker.shutdown.cancelled() => return None,
            consuming = tokio::time::timeout(OPEN_TIMEOUT, consuming) => {
                consuming.unwrap_or(Err(BrokerError::Silent(OPEN_TIMEOUT)))
            }
        };
        match consuming {
            Ok(consuming) => {
                worker.readiness.set_broker(true);
                worker.readiness.set_consuming(true);
                tracing::info!(queue = config.work_queue, "consuming");
                return Some(consuming);
            }
            Err(error) => {
                worker.readiness.set_broker(false);
                let wait = reconnection.failed(&error, error.is_refusal());
                if !Backoff::wait(wait, &worker.shutdown).await {
                    return None;
                }
            }
        }
    }
}

/// Hands the session's deliveries to the worker as they come, those that arrived together as
/// one batch (a quiet queue gives batches of one, so nothing waits for a batch to fill), until
/// the session breaks or the worker stops.
///
/// At most `decisions_in_flight` batches are being decided at once: the next batch is taken
/// off the consumer only when a decision slot is free, so deliveries that arrive meanwhile
/// join it. Under load batches grow by themselves, and a batch costs Redis far less per event
/// than as many calls of one (each call is parsed, run and answered on its own); when the
/// queue is quiet a slot is always free and nothing waits.
async fn dispatch(
    worker: &Arc<Worker>,
    mut consumer: Consumer,
    context: &Arc<DeliveryContext>,
    in_flight: &TaskTracker,
    abandoned: &CancellationToken,
    reconnection: &Reconnection,
) {
    let mut batches = (&mut consumer).ready_chunks(worker.config.batch_size.into());
    let decisions = Arc::new(Semaphore::new(worker.config.decisions_in_flight.into()));
    loop {
        // A free slot first, then whatever deliveries are ready by then.
        let turn = async {
            let permit = decisions.clone().acquire_owned().await;
            let slot = DecisionSlot::new(permit.expect("the semaphore is never closed"));
            (slot, batches.next().await)
        };
        let (mut slot, next) = tokio::select! {
            _ = worker.shutdown.cancelled() => return,
            _ = context.session_failed.cancelled() => return,
            turn = turn => turn,
        };
        let retry_in = reconnection.next_outage_delay();
        let Some(batch) = next else {
            let error = "the consumer was cancelled by the broker";
            Reconnecting {
                target: "broker",
                error: &error,
                retry_in,
            }
            .emit();
            return;
        };
        let mut deliveries: Vec<Delivery> = Vec::with_capacity(batch.len());
        let mut failed = None;
        for delivery in batch {
            match delivery {
                Ok(delivery) => deliveries.push(delivery),
                Err(error) => failed = Some(error),
            }
        }
        // In arrival order, before any of them can be settled.
        context
            .acks
            .received(deliveries.iter().map(|d| d.delivery_tag))
            .await;
        if !deliveries.is_empty() {
            let (worker, context, abandoned) = (worker.clone(), context.clone(), abandoned.clone());
            let count = deliveries.len() as f64;
            telemetry::batch(deliveries.len());
            telemetry::in_flight(count);
            in_flight.spawn(async move {
                tokio::select! {
                    _ = worker.handle(deliveries, &context, &mut slot) => {}
                    // Stopping here is like a crash: the broker redelivers the events and the
                    // store replays what was applied.
                    _ = abandoned.cancelled() => {}
                }
                telemetry::in_flight(-count);
            });
        }
        if let Some(error) = failed {
            Reconnecting {
                target: "broker",
                error: &error,
                retry_in,
            }
            .emit();
            return;
        }
    }
}

/// The session ended. Stopping: no new deliveries, finish what is in flight (each acks after
/// its outputs are confirmed), then close (anything still unacked is requeued by the broker);
/// what has not finished within `STOP_GRACE` is given up as for a broken session.
/// Broken: in-flight events cannot be acked on it any more, so it is dropped and the broker
/// requeues them (they are replayed, not decided again, on redelivery); those still waiting on
/// the dead connection after a grace period (a confirm or an ack that never resolves) are given
/// up, so no task and no in-flight count outlives its session.
async fn drain(
    worker: &Worker,
    session: Session,
    tag: &str,
    in_flight: TaskTracker,
    abandoned: CancellationToken,
    stopping: bool,
) {
    if stopping {
        let finished = tokio::time::timeout(STOP_GRACE, async {
            session.cancel(tag).await;
            in_flight.close();
            in_flight.wait().await;
            session.close().await;
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                batches = in_flight.len(),
                "stopping: the broker did not take what this worker sent within {STOP_GRACE:?}; \
                 the events in flight are left to it, and it redelivers them"
            );
            in_flight.close();
            abandoned.cancel();
            in_flight.wait().await;
        }
        worker.readiness.set_broker(false);
        return;
    }
    worker.readiness.set_broker(false);
    in_flight.close();
    if tokio::time::timeout(BROKEN_SESSION_GRACE, in_flight.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            batches = in_flight.len(),
            "events of the broken session are given up; the broker redelivers them"
        );
        abandoned.cancel();
        in_flight.wait().await;
    }
    drop(session);
}
