//! Timers as RabbitMQ delay queues.
//!
//! A timer is a message published to `<work queue>.delay.<ms>`: a durable classic queue whose
//! every message lives exactly `<ms>` (queue-wide `x-message-ttl`, so expiry is in publish
//! order) and is then dead-lettered into the work queue, where any worker applies it like any
//! other event. Why this rather than a Redis due-set that workers poll:
//! - nothing polls: the broker delivers a timer when it is due, to one worker;
//! - it survives worker restarts and crashes (persistent message, durable queue) and fires
//!   while the worker that armed it is down;
//! - a timer that fires twice (redelivery) is deduplicated by its id like any event, and its
//!   token makes a stale timer harmless;
//! - it is armed together with the outputs, before the causing event is acked, so a crash in
//!   between re-arms it on redelivery.
//!
//! Delays are a ladder, 250 ms × 2^k (22 queues, up to about six days): a timer goes to the longest
//! step that fits, carrying its due time in the `x-switchboard-due` header, and the worker that
//! receives it early sends it on to the step that fits what remains. So a reply timeout of 30 s
//! or a schedule boundary next Monday needs no queue of its own, and fires within
//! `DUE_TOLERANCE_MS` of its time. The queues have no `x-expires`: an idle queue may still hold
//! timers, and expiry would drop them.

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::Channel;

/// Header holding a timer's due time (ms since the epoch).
pub const DUE_HEADER: &str = "x-switchboard-due";

/// A timer this close to its due time fires.
pub const DUE_TOLERANCE_MS: i64 = 125;

const SHORTEST_STEP_MS: u64 = 250;
const LONGEST_STEP_MS: u64 = SHORTEST_STEP_MS << 21; // about six days

/// The delay queue step for a timer due in `remaining_ms`: the longest step that does not
/// overshoot (the shortest one for what is left under it).
pub fn ladder_step(remaining_ms: u64) -> u64 {
    let mut step = SHORTEST_STEP_MS;
    while step * 2 <= remaining_ms && step < LONGEST_STEP_MS {
        step *= 2;
    }
    step
}

/// Every step of the ladder (ms), shortest first.
pub fn ladder_steps() -> impl Iterator<Item = u64> {
    std::iter::successors(Some(SHORTEST_STEP_MS), |step| {
        (*step < LONGEST_STEP_MS).then(|| step * 2)
    })
}

/// Every delay queue of the ladder for `work_queue` (to delete a topology).
pub fn ladder_queue_names(work_queue: &str) -> Vec<String> {
    ladder_steps()
        .map(|step| queue_name(work_queue, step))
        .collect()
}

/// The delay queue for `delay_ms`.
pub fn queue_name(work_queue: &str, delay_ms: u64) -> String {
    format!("{work_queue}.delay.{delay_ms}")
}

pub fn arguments(work_queue: &str, delay_ms: u64) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("classic")),
    );
    args.insert(
        "x-message-ttl".into(),
        AMQPValue::LongLongInt(delay_ms as i64),
    );
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from("")),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(work_queue)),
    );
    args
}

pub async fn declare(channel: &Channel, work_queue: &str, delay_ms: u64) -> lapin::Result<()> {
    channel
        .queue_declare(
            queue_name(work_queue, delay_ms).as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments(work_queue, delay_ms),
        )
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ladder_never_overshoots_and_stays_short() {
        assert_eq!(ladder_step(0), 250);
        assert_eq!(ladder_step(1000), 1000);
        assert_eq!(ladder_step(1999), 1000);
        assert_eq!(ladder_step(30_000), 16_000);
        let week = 7 * 24 * 3600 * 1000;
        assert_eq!(ladder_step(week), LONGEST_STEP_MS);
        // Hops for a week-long timer: a few dozen at most.
        let (mut remaining, mut hops) = (week, 0);
        while remaining > DUE_TOLERANCE_MS as u64 {
            remaining -= ladder_step(remaining).min(remaining);
            hops += 1;
        }
        assert!(hops < 40, "{hops} hops");
        // The README counts the queues a topology declares.
        assert_eq!(ladder_steps().count(), 22);
    }
}
