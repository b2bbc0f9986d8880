//! Identifiers that become parts of Redis key names and routing decisions.
//!
//! The contract allows 1–128 characters from `A–Z a–z 0–9 _ . : @ -`. Checking this before an id
//! reaches the store is what keeps one tenant out of another's keys: none of `{`, `}`, `|`, `*`,
//! spaces or control characters can get through, so an id can neither break out of its project's
//! hash tag nor collide with the separators the store uses inside key names and members.

use std::fmt;

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Longest identifier the contract accepts.
pub const MAX_ID_LEN: usize = 128;

/// A validated identifier (project, agent, conversation, visitor, skill, channel).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Id(String);

/// Why a string is not an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("is longer than {MAX_ID_LEN} characters")]
    TooLong,
    #[error("has a character outside A-Z a-z 0-9 _ . : @ -")]
    BadCharacter,
}

impl Id {
    pub fn parse(value: &str) -> Result<Id, IdError> {
        if value.is_empty() {
            return Err(IdError::Empty);
        }
        if value.len() > MAX_ID_LEN {
            return Err(IdError::TooLong);
        }
        if !value.bytes().all(is_id_byte) {
            return Err(IdError::BadCharacter);
        }
        Ok(Id(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'@' | b'-')
}

/// An identifier in event data: a string of the contract's alphabet. The error names what is
/// wrong with the value (the field is named by whoever reads it).
impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Id, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Id::parse(&text)
                .map_err(|e| serde::de::Error::custom(format!("{} {e}", super::quote(&text)))),
            _ => Err(serde::de::Error::custom("must be a string")),
        }
    }
}

impl JsonSchema for Id {
    fn schema_name() -> Cow<'static, str> {
        "Identifier".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[A-Za-z0-9_.:@-]{1,128}$",
            "minLength": 1,
            "maxLength": 128,
            "description": "1-128 characters from A-Z a-z 0-9 _ . : @ -"
        })
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_contract_alphabet() {
        for ok in [
            "a",
            "acme",
            "agent-7",
            "user@example.com",
            "wa:+1",
            "A_b.c:d@e-f",
        ] {
            if ok.contains('+') {
                assert_eq!(Id::parse(ok), Err(IdError::BadCharacter));
            } else {
                assert_eq!(Id::parse(ok).unwrap().as_str(), ok);
            }
        }
        assert!(Id::parse(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_what_could_escape_a_key() {
        assert_eq!(Id::parse(""), Err(IdError::Empty));
        assert_eq!(Id::parse(&"x".repeat(129)), Err(IdError::TooLong));
        for bad in ["a}b", "{acme}", "a|b", "a b", "a*", "é", "a\nb", "a/b"] {
            assert_eq!(Id::parse(bad), Err(IdError::BadCharacter), "{bad:?}");
        }
    }
}
