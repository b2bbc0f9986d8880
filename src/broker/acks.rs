//! Acknowledging a channel's deliveries in order, many in one frame.
//!
//! Every ack is a frame the client hands to its I/O thread and RabbitMQ handles on its own:
//! at a few thousand events a second, one ack per event is a large share of both processes'
//! work (profiling showed thread wake-ups, not our code, dominating the worker). The worker
//! settles deliveries out of order (events are handled concurrently), so acks cannot simply be
//! "multiple" up to the latest: that would acknowledge an event still in flight, which a crash
//! would then lose. Here a settled delivery is acknowledged once every delivery received
//! before it is settled too, with one `basic.ack multiple` for the whole run.
//!
//! The price: a settled event waits for its slowest elder before its ack leaves, so after a
//! crash a few events already done are redelivered. They are replayed, not decided again (the
//! store recorded their outputs), so nothing happens twice.

use std::collections::BTreeMap;

use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::Channel;
use tokio::sync::Mutex;

/// The deliveries of one consuming channel that are not acknowledged yet.
pub struct Acknowledgements {
    channel: Channel,
    /// Delivery tag → settled, for every delivery received and not acknowledged yet, in the
    /// order RabbitMQ sent them (delivery tags grow on a channel). Locked while a frame is
    /// sent, so a `multiple` ack never goes out after a later one (RabbitMQ closes the channel
    /// on a tag it already saw acknowledged).
    outstanding: Mutex<BTreeMap<u64, bool>>,
}

impl Acknowledgements {
    pub fn new(channel: Channel) -> Acknowledgements {
        Acknowledgements {
            channel,
            outstanding: Mutex::default(),
        }
    }

    /// Records deliveries as received. Called by the consumer loop for every delivery, in
    /// the order they arrive, before the delivery is handled.
    pub async fn received(&self, delivery_tags: impl IntoIterator<Item = u64>) {
        let mut outstanding = self.outstanding.lock().await;
        for delivery_tag in delivery_tags {
            outstanding.insert(delivery_tag, false);
        }
    }

    /// True when the delivery was acknowledged or returned to the queue already (or is
    /// settled and waits for the deliveries before it).
    pub async fn is_settled(&self, delivery_tag: u64) -> bool {
        self.outstanding.lock().await.get(&delivery_tag) != Some(&false)
    }

    /// Settles deliveries whose work is done (a batch's, together): each is acknowledged,
    /// with the settled ones after it, as soon as every delivery before it is settled. A
    /// batch whose elders are all settled goes in one frame, not one per event. For each
    /// delivery, in order: false when it was settled already (nothing is acknowledged twice).
    pub async fn ack(&self, delivery_tags: &[u64]) -> Result<Vec<bool>, lapin::Error> {
        let mut outstanding = self.outstanding.lock().await;
        let newly: Vec<bool> = delivery_tags
            .iter()
            .map(|delivery_tag| match outstanding.get_mut(delivery_tag) {
                Some(settled @ false) => {
                    *settled = true;
                    true
                }
                _ => false,
            })
            .collect();
        if newly.contains(&true) {
            self.ack_settled_run(&mut outstanding).await?;
        }
        Ok(newly)
    }

    /// Returns a delivery to the queue now (a negative ack that requeues it); it then counts
    /// as settled. False when it was settled already.
    pub async fn requeue(&self, delivery_tag: u64) -> Result<bool, lapin::Error> {
        let mut outstanding = self.outstanding.lock().await;
        if outstanding.get(&delivery_tag) != Some(&false) {
            return Ok(false);
        }
        let requeue = BasicNackOptions {
            requeue: true,
            multiple: false,
        };
        self.channel.basic_nack(delivery_tag, requeue).await?;
        // No longer outstanding at the broker: a later `multiple` ack does not cover it, and
        // the settled deliveries it held back can go.
        outstanding.remove(&delivery_tag);
        self.ack_settled_run(&mut outstanding).await?;
        Ok(true)
    }

    /// Acknowledges, in one frame, the settled deliveries no unsettled one precedes.
    async fn ack_settled_run(
        &self,
        outstanding: &mut BTreeMap<u64, bool>,
    ) -> Result<(), lapin::Error> {
        let mut highest = None;
        while let Some(entry) = outstanding.first_entry() {
            if !*entry.get() {
                break;
            }
            highest = Some(*entry.key());
            entry.remove();
        }
        if let Some(highest) = highest {
            let multiple = BasicAckOptions { multiple: true };
            self.channel.basic_ack(highest, multiple).await?;
        }
        Ok(())
    }
}
