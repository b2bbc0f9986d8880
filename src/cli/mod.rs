//! The subcommands of the `switchboard` binary.

pub mod chart;
pub mod dead_letters;
pub mod demo;
pub mod forget;
pub mod inspect;
pub mod publish;
pub mod run;
pub mod schemas;
pub mod simulate;
pub mod why;
