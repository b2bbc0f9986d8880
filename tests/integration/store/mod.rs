//! The allocation decisions, driven through the store directly (no broker): strategies,
//! eligibility, the waiting queue, order tolerance and idempotency, batches, and the function
//! library in Redis.

mod allocation;
mod batches;
mod layout;
mod library;
mod waiting;
