//! The allocation domain: settings, agents and their eligibility, with no I/O.
//!
//! The decisions themselves run inside Redis (see `store/scripts`), so that checking eligibility,
//! choosing an agent and recording the choice is one atomic step across all workers. What lives
//! here is everything that can be decided before that step: which values are valid, what the
//! defaults are, and the calendar arithmetic Lua cannot do (time zones).

pub mod calendar;
pub mod schedule;
pub mod settings;
