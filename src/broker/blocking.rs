//! The broker's resource alarms as a worker meets them. RabbitMQ low on memory or disk stops
//! reading from every connection that publishes (`connection.blocked`, with its reason) until
//! the alarm clears (`connection.unblocked`). Nothing is lost meanwhile: the worker's outputs
//! wait unconfirmed and its events unacked. But no assignment reaches the platform either, and
//! the connection looks healthy, so the worker listens for these notices to say so.

use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use lapin::{Connection, Event};

/// What the broker says of a connection's publishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blocking {
    /// Publishing is blocked, for the broker's reason (`low on memory`, `low on disk`).
    Blocked(String),
    /// Publishing goes through again.
    Unblocked,
}

/// The blocking notices the broker sends on `connection` from now on. lapin hands connection
/// events only to listeners that exist when they arrive: this is taken before the connection
/// publishes anything.
pub(super) fn notices(connection: &Connection) -> BoxStream<'static, Blocking> {
    connection
        .events_listener()
        .filter_map(|event| {
            std::future::ready(match event {
                Event::ConnectionBlocked(reason) => Some(Blocking::Blocked(reason)),
                Event::ConnectionUnblocked => Some(Blocking::Unblocked),
                _ => None,
            })
        })
        .boxed()
}
