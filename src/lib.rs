//! Switchboard: assigns customer conversations to support agents.
//!
//! Data flows one way: broker → contract → worker → store → broker. The domain and the contract
//! are pure; I/O lives in `broker`, `store`, `http`, `backlog` and the clock.

pub mod application;
pub mod backlog;
pub mod backoff;
pub mod broker;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contract;
pub mod domain;
pub mod http;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod worker;
