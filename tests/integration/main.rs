//! One integration-test binary, against the machine's real RabbitMQ and Redis.
//! Every test isolates itself: its own project id, its own exchange and queue names.

mod acks;
mod broker_restart;
mod cli;
mod contract_docs;
mod deploy;
mod helpers;
mod lifecycle;
mod modes;
mod outages;
mod private_rabbit;
mod routing;
mod simulate;
mod store;
mod tls;
mod tls_support;
mod worker;
