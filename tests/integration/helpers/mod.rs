//! What the tests share, by concern: unique names, the events a platform sends, a project driven
//! through the store, a private broker topology per test, workers in this process or as
//! processes, Redis (the machine's and private servers), a relay that can go silent, HTTP, and
//! the outbound schemas.
//! Everything is re-exported here, so a test module needs only `use crate::helpers::*;`.

mod env;
mod events;
mod http;
mod leftovers;
mod names;
mod outputs;
mod project;
mod redis;
mod relay;
mod schemas;
mod workers;

pub use env::*;
pub use events::*;
pub use http::*;
pub use leftovers::note_project;
pub use names::*;
pub use outputs::*;
pub use project::*;
pub use redis::*;
pub use relay::*;
pub use schemas::*;
pub use workers::*;

/// Polls `check` until it holds (15 s at most).
pub async fn wait_until<F, Fut>(check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!("the condition did not hold within 15 s");
}
