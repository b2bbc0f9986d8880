//! Deliveries settled out of order are acknowledged in order, many in one frame: none is
//! acknowledged before every delivery received ahead of it is settled, none twice, and a
//! returned one goes back to the queue.

use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use switchboard::broker::acks::Acknowledgements;

use crate::helpers::*;

/// A private queue holding `n` messages, and the number of its ready messages.
struct Queue {
    connection: lapin::Connection,
    name: String,
}

impl Queue {
    async fn with_messages(n: usize) -> Queue {
        let connection = lapin::Connection::connect(&amqp_url(), Default::default())
            .await
            .unwrap();
        let channel = connection.create_channel().await.unwrap();
        let name = unique("acks");
        // Exclusive: the queue goes with its connection, even when the test fails. (An
        // auto-delete queue read with `basic.get` never had a consumer, so it would stay.)
        let options = QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        };
        channel
            .queue_declare(name.as_str().into(), options, FieldTable::default())
            .await
            .unwrap();
        for i in 0..n {
            channel
                .basic_publish(
                    "".into(),
                    name.as_str().into(),
                    BasicPublishOptions::default(),
                    format!("m{i}").as_bytes(),
                    Default::default(),
                )
                .await
                .unwrap();
        }
        Queue { connection, name }
    }

    /// Takes `n` messages on a new channel, each recorded as received; their delivery tags.
    async fn take(&self, n: usize) -> (lapin::Channel, Acknowledgements, Vec<u64>) {
        let channel = self.connection.create_channel().await.unwrap();
        let acks = Acknowledgements::new(channel.clone());
        let mut tags = vec![];
        for _ in 0..n {
            let message = channel
                .basic_get(self.name.as_str().into(), BasicGetOptions { no_ack: false })
                .await
                .unwrap()
                .expect("a message is ready");
            acks.received([message.delivery.delivery_tag]).await;
            tags.push(message.delivery.delivery_tag);
        }
        (channel, acks, tags)
    }

    /// Waits (up to 2 s) until `expected` messages are ready, and returns how many are. The
    /// broker handles channels side by side: a requeue or a close on one is not yet seen by a
    /// declare on another when the call that sent it returns.
    async fn ready_soon(&self, expected: u32) -> u32 {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let ready = self.ready().await;
            if ready == expected || tokio::time::Instant::now() > deadline {
                return ready;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Messages ready in the queue (not the ones delivered and unacknowledged).
    async fn ready(&self) -> u32 {
        let channel = self.connection.create_channel().await.unwrap();
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(self.name.as_str().into(), options, FieldTable::default())
            .await
            .unwrap();
        queue.message_count()
    }
}

#[tokio::test]
async fn settled_deliveries_wait_for_their_elders_then_go_in_one_ack() {
    let queue = Queue::with_messages(4).await;
    let (channel, acks, tags) = queue.take(4).await;
    // The last two are done first; the first is still in flight.
    assert!(acks.ack(&[tags[3]]).await.unwrap()[0]);
    assert!(acks.ack(&[tags[2]]).await.unwrap()[0]);
    assert!(!acks.ack(&[tags[2]]).await.unwrap()[0], "settled once only");
    assert!(acks.is_settled(tags[2]).await);
    assert!(!acks.is_settled(tags[0]).await);
    // The worker dies now: nothing was acknowledged ahead of the event in flight, so all
    // four come back (the two done are replayed by the store, not decided again).
    channel.close(200, "crash".into()).await.unwrap();
    assert_eq!(queue.ready_soon(4).await, 4);
}

#[tokio::test]
async fn a_returned_delivery_releases_the_settled_ones_behind_it() {
    let queue = Queue::with_messages(4).await;
    let (channel, acks, tags) = queue.take(4).await;
    assert!(acks.ack(&[tags[1]]).await.unwrap()[0]);
    assert!(acks.ack(&[tags[2]]).await.unwrap()[0]);
    // The first goes back to the queue: the two settled behind it are acknowledged.
    assert!(acks.requeue(tags[0]).await.unwrap());
    assert!(!acks.requeue(tags[0]).await.unwrap(), "returned once only");
    assert_eq!(queue.ready_soon(1).await, 1);
    // Closing the channel requeues whatever was not acknowledged: the fourth, never settled,
    // joins the returned one; the two settled were acknowledged (and the channel never
    // failed on a tag acknowledged twice).
    channel.close(200, "done".into()).await.unwrap();
    assert_eq!(queue.ready_soon(2).await, 2);
}

#[tokio::test]
async fn a_batch_settles_together_and_reports_which_were_new() {
    let queue = Queue::with_messages(4).await;
    let (channel, acks, tags) = queue.take(4).await;
    assert!(acks.ack(&[tags[1]]).await.unwrap()[0]);
    // The batch of the first three, one of them settled already: the two others are new,
    // and with them the first three go (the fourth is still in flight).
    let newly = acks.ack(&tags[..3]).await.unwrap();
    assert_eq!(newly, vec![true, false, true]);
    assert!(acks.is_settled(tags[0]).await);
    assert!(!acks.is_settled(tags[3]).await);
    channel.close(200, "crash".into()).await.unwrap();
    assert_eq!(
        queue.ready_soon(1).await,
        1,
        "only the one in flight comes back"
    );
}
