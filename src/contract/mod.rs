//! The wire contract (`shared/CONTRACT.md`): what platforms send, what workers answer.
//!
//! Everything here is pure: bytes in, typed events or a [`Rejection`] out. A rejection's text is
//! what ends up in the `x-switchboard-error` header of the dead-lettered event, so it is short and
//! says what a platform developer has to fix.

pub mod agents;
pub mod asyncapi;
pub mod envelope;
pub mod ids;
pub mod inbound;
pub mod outbound;
pub mod parse;
pub mod rules;
pub mod schema;
pub mod settings;
pub mod skills;

pub use envelope::{CloudEvent, MAX_EVENT_BYTES};

/// The contract's default names of its exchanges and queues (a deployment may rename them).
pub mod names {
    /// Topic exchange platforms publish to, routing key = the event type.
    pub const INBOUND_EXCHANGE: &str = "switchboard.in";
    /// Quorum queue every worker consumes, bound to the inbound exchange with `#`.
    pub const WORK_QUEUE: &str = "switchboard.work";
    /// Topic exchange workers publish their decisions to.
    pub const OUTBOUND_EXCHANGE: &str = "switchboard.out";
    /// Quorum queue of the events that cannot be processed.
    pub const DEAD_LETTER_QUEUE: &str = "switchboard.dead";
}
pub use ids::Id;
pub use inbound::{decode, EventKind, InboundEvent};
pub use outbound::OutboundEvent;

/// Why an inbound event cannot be processed. Its `Display` is the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("body of {0} bytes is larger than the 64 KiB limit")]
    TooLarge(usize),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    #[error("not a CloudEvents 1.0 structured event: {0}")]
    NotCloudEvent(String),
    #[error("unknown event type `{0}`")]
    UnknownType(String),
    #[error("missing required field `{0}`")]
    MissingField(String),
    #[error("invalid field `{field}`: {reason}")]
    InvalidField { field: String, reason: String },
}

impl Rejection {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Rejection {
        Rejection::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A short machine-friendly name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::TooLarge(_) => "too_large",
            Rejection::InvalidJson(_) => "invalid_json",
            Rejection::NotCloudEvent(_) => "not_cloudevent",
            Rejection::UnknownType(_) => "unknown_type",
            Rejection::MissingField(_) => "missing_field",
            Rejection::InvalidField { .. } => "invalid_field",
        }
    }
}

/// Shortens a value quoted in a rejection so a huge field cannot blow up a header.
pub(crate) fn quote(value: &str) -> String {
    const MAX: usize = 64;
    if value.chars().count() <= MAX {
        value.to_string()
    } else {
        let head: String = value.chars().take(MAX).collect();
        format!("{head}…")
    }
}
