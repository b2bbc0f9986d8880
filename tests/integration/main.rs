//! One integration-test binary, against the machine's real RabbitMQ and Redis.
//! Every test isolates itself: its own project id, its own exchange and queue names.

mod acks;
mod broker_alarm;
mod broker_restart;
mod capacity;
mod capacity_workers;
mod cli;
mod connections;
mod contract_docs;
mod deploy;
mod fail_fast;
mod failover;
mod helpers;
mod http;
mod interleaving;
mod lifecycle;
mod modes;
mod order;
mod outages;
mod private_rabbit;
mod resharding;
mod routing;
mod secrets;
mod simulate;
mod store;
mod threads;
mod tls;
mod tls_support;
mod topology;
mod upgrade;
mod wait_cost;
mod waiting;
mod waiting_workers;
mod worker;
