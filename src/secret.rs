//! Connection URLs that carry credentials, and the one way they may be shown.
//!
//! A broker or Redis URL holds a user's password (`amqps://user:password@host/vhost`,
//! `rediss://user:password@host`). It is kept in a [`SecretUrl`], which has no `Display`, prints
//! redacted with `Debug`, and is wiped from memory when dropped; [`redact_url`] is what a log
//! line, an error message or an HTTP answer shows instead.

use std::fmt;
use std::ops::Deref;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// A URL (or a comma-separated list of node URLs) whose user info is secret.
///
/// It dereferences to `str` so that it can be handed to a client library as it is
/// (`lapin::Connection::connect(&config.amqp_url, …)`); nothing prints it: there is no
/// `Display`, and `Debug` shows [`redact_url`]'s form.
#[derive(Clone, Default, Deserialize)]
#[serde(from = "String")]
pub struct SecretUrl(SecretString);

impl SecretUrl {
    /// The URL with its password, for a client library. Never for a log line: see
    /// [`SecretUrl::redacted`].
    pub fn as_str(&self) -> &str {
        self.0.expose_secret()
    }

    /// The URL fit for a log line or an error message.
    pub fn redacted(&self) -> String {
        redact_url(self.as_str())
    }

    /// The node URLs of a comma-separated list (one for a single URL), trimmed, empty ones
    /// left out.
    pub fn nodes(&self) -> Vec<&str> {
        nodes(self.as_str())
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        SecretUrl(SecretString::from(url))
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        SecretUrl(SecretString::from(url))
    }
}

impl Deref for SecretUrl {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for SecretUrl {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.redacted(), f)
    }
}

/// The node URLs of a comma-separated list, trimmed, empty ones left out.
pub fn nodes(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .collect()
}

/// URLs fit for a log line: in each URL of a comma-separated list, the password (and a user
/// name that may be a token) kept out. A user name alone stays: it tells which account is in
/// use. Anything that does not look like a URL is shown as `***`, since it may be a secret
/// pasted in the wrong place.
pub fn redact_url(urls: &str) -> String {
    urls.split(',')
        .map(|url| redact_one(url.trim()))
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_one(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.is_empty() {
            String::new()
        } else {
            "***".into()
        };
    };
    // The authority ends at the first `/`, `?` or `#` after the user info; the user info ends
    // at the last `@` before that point (a password may itself hold `@`, `/` or `?` when it is
    // not percent-encoded, so the last `@` of the whole URL is the safer end).
    match rest.rfind('@') {
        Some(at) => {
            let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                // A user info without `:` is a password alone (`redis://secret@host`) or a
                // token: neither is shown.
                None => format!("{scheme}://***@{host}"),
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_a_log_line() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@rabbit:5672/%2f"),
            "amqp://guest:***@rabbit:5672/%2f"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(redact_url("redis://:pw@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("rediss://token@h:1"), "rediss://***@h:1");
        assert_eq!(
            redact_url("redis://u:p@ss/w?rd@h:1/0"),
            "redis://u:***@h:1/0"
        );
        assert_eq!(redact_url("not a url with s3cret"), "***");
    }

    #[test]
    fn every_node_of_a_cluster_list_is_redacted() {
        let urls = "rediss://u:one@a:1, rediss://u:two@b:2,rediss://u:three@c:3";
        let shown = redact_url(urls);
        assert_eq!(
            shown,
            "rediss://u:***@a:1,rediss://u:***@b:2,rediss://u:***@c:3"
        );
        for secret in ["one", "two", "three"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn debug_prints_no_password() {
        let url = SecretUrl::from("amqps://switchboard:hunter2@mq:5671/prod");
        let printed = format!("{url:?} {:?}", Some(url.clone()));
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("switchboard:***@mq:5671/prod"),
            "{printed}"
        );
        assert_eq!(url.as_str(), "amqps://switchboard:hunter2@mq:5671/prod");
    }

    #[test]
    fn a_list_splits_into_nodes() {
        let urls = SecretUrl::from("redis://a:1, redis://b:2,,redis://c:3");
        assert_eq!(urls.nodes(), ["redis://a:1", "redis://b:2", "redis://c:3"]);
    }
}
