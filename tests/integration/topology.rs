//! A private topology's teardown leaves nothing: tests, the benchmark and `simulate` delete
//! what they declared with `topology::delete`, and a queue it missed would stay on the broker,
//! messages and all.

use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use switchboard::broker::{delay, topology, Session};

use crate::helpers::*;

/// Whether the broker has an exchange of that name (as `queue_exists`).
async fn exchange_exists(connection: &Connection, exchange: &str) -> bool {
    let channel = connection.create_channel().await.unwrap();
    let options = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Topic,
            options,
            FieldTable::default(),
        )
        .await
        .is_ok()
}

async fn publish(channel: &Channel, exchange: &str, routing_key: &str) {
    channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
}

#[tokio::test]
async fn deleting_a_topology_leaves_none_of_its_queues_or_exchanges() {
    if crate::tls_support::second_pass() {
        return;
    }
    let config = Env::config_on(amqp_url());
    let session = Session::open(&config, "tests").await.unwrap();
    let connection = Connection::connect(&config.amqp_url, Default::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    // Left as a test leaves it: an event in the work queue and a timer in a delay queue.
    let delay_queues = delay::ladder_queue_names(&config.work_queue);
    publish(&channel, &config.inbound_exchange, "conversation.created").await;
    publish(&channel, "", &delay_queues[3]).await;
    let queues: Vec<&str> = [&config.work_queue, &config.dead_letter_queue]
        .into_iter()
        .chain(&delay_queues)
        .map(String::as_str)
        .collect();
    let exchanges = [&config.inbound_exchange, &config.outbound_exchange];
    for queue in &queues {
        assert!(queue_exists(&connection, queue).await, "{queue} declared");
    }
    for exchange in exchanges {
        assert!(
            exchange_exists(&connection, exchange).await,
            "{exchange} declared"
        );
    }

    topology::delete(&channel, &config).await.unwrap();

    let mut left = Vec::new();
    for queue in &queues {
        if queue_exists(&connection, queue).await {
            left.push(queue.to_string());
        }
    }
    for exchange in exchanges {
        if exchange_exists(&connection, exchange).await {
            left.push(exchange.clone());
        }
    }
    drop(session);
    let _ = connection.close(200, "done".into()).await;
    assert!(left.is_empty(), "left on the broker: {left:?}");
}
