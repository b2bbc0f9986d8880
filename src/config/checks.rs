//! Settings that cannot work, found before connecting: a malformed URL, an unsupported scheme,
//! a cluster list that mixes TLS and plain nodes, an HTTP address that is not one. Each is a
//! [`SettingError`] naming the variable; none quotes a password.

use std::net::SocketAddr;

use url::Url;

use super::error::SettingError;
use crate::secret::{nodes, redact_url};

/// `SWITCHBOARD_AMQP_URL`: `amqp://` or `amqps://`, with a host.
pub fn check_amqp_url(url: &str) -> Result<(), SettingError> {
    let problem = |what: String| SettingError::new("amqp_url", what);
    let parsed = parse(url).map_err(problem)?;
    match parsed.scheme() {
        "amqp" | "amqps" => {}
        other => {
            return Err(problem(format!(
                "unsupported scheme `{other}://`: use amqp:// or amqps:// (TLS)"
            )))
        }
    }
    // lapin reads the parts itself; what it would refuse, or silently replace, is refused here.
    if url.parse::<lapin::uri::AMQPUri>().is_err() {
        return Err(problem(format!(
            "{} is not an AMQP URL (amqps://user:password@host:port/vhost)",
            redact_url(url)
        )));
    }
    Ok(())
}

/// `SWITCHBOARD_REDIS_URL`: one `redis://` or `rediss://` URL (a Unix socket too), or several
/// comma-separated node URLs of one cluster, all TLS or all plain.
pub fn check_redis_urls(urls: &str) -> Result<(), SettingError> {
    let problem = |what: String| SettingError::new("redis_url", what);
    let nodes = nodes(urls);
    if nodes.is_empty() {
        return Err(problem("no Redis URL given".into()));
    }
    let mut schemes = Vec::with_capacity(nodes.len());
    for node in &nodes {
        let parsed = parse(node).map_err(problem)?;
        let scheme = parsed.scheme().to_string();
        let cluster = nodes.len() > 1;
        match scheme.as_str() {
            "redis" | "rediss" => {}
            "unix" | "redis+unix" if !cluster => {}
            "unix" | "redis+unix" => {
                return Err(problem(
                    "a cluster's nodes are reached over TCP: use redis:// or rediss:// URLs".into(),
                ))
            }
            other => {
                return Err(problem(format!(
                    "unsupported scheme `{other}://`: use redis:// or rediss:// (TLS)"
                )))
            }
        }
        if parsed.fragment().is_some_and(|f| f.contains("insecure")) {
            return Err(problem(
                "certificate verification cannot be turned off (#insecure); trust the server's CA with SWITCHBOARD_TLS_CA_FILE instead"
                    .into(),
            ));
        }
        if redis::IntoConnectionInfo::into_connection_info(*node).is_err() {
            return Err(problem(format!("{} is not a Redis URL", redact_url(node))));
        }
        schemes.push(scheme);
    }
    if schemes.iter().any(|s| *s != schemes[0]) {
        return Err(problem(
            "a cluster's nodes must all use TLS (rediss://) or all not (redis://)".into(),
        ));
    }
    Ok(())
}

/// `SWITCHBOARD_HTTP_ADDR`: `address:port` or `host:port` (port 0: any free port).
pub fn check_http_addr(addr: &str) -> Result<(), SettingError> {
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(SettingError::new(
            "http_addr",
            format!("`{addr}` is not an address:port (such as 0.0.0.0:9464)"),
        )),
    }
}

/// Parses a URL; the error quotes it redacted.
fn parse(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|error| format!("{}: {error}", redact_url(url)))?;
    let socket = matches!(parsed.scheme(), "unix" | "redis+unix");
    if parsed.cannot_be_a_base() || !parsed.has_host() && !socket {
        return Err(format!("{}: no host", redact_url(url)));
    }
    Ok(parsed)
}

/// What a configuration layer (the TOML file, a variable) got wrong, as one line naming it.
/// A value is never quoted back: it may be a secret put in the wrong variable.
pub fn layer_error(error: config::ConfigError, file: Option<&std::path::Path>) -> SettingError {
    use config::ConfigError;
    let file_setting = || match file {
        Some(path) => format!("SWITCHBOARD_CONFIG ({})", path.display()),
        None => "SWITCHBOARD_CONFIG".to_string(),
    };
    match &error {
        ConfigError::Type {
            key: Some(key),
            expected,
            ..
        } => SettingError::new(key, format!("invalid value, expected {expected}")),
        ConfigError::At {
            error: inner,
            key: Some(key),
            ..
        } => match inner.as_ref() {
            ConfigError::Type { expected, .. } => {
                SettingError::new(key, format!("invalid value, expected {expected}"))
            }
            _ => SettingError::new(key, "invalid value"),
        },
        ConfigError::Message(message) => match unknown_field(message) {
            Some(field) => SettingError::new(field, "not a setting of this version"),
            None => SettingError::new(&file_setting(), message.clone()),
        },
        ConfigError::FileParse { cause, .. } => {
            SettingError::new(&file_setting(), one_line(&cause.to_string()))
        }
        _ => SettingError::new(&file_setting(), error.to_string()),
    }
}

/// A parser's message on one line: its first line (where) and its last (what), without the
/// excerpt between them.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [only] => only.to_string(),
        [first, .., last] => format!("{first}: {last}"),
    }
}

/// The field of serde's "unknown field `x`, expected one of …".
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_that_cannot_work_are_named() {
        assert!(check_amqp_url("amqps://u:p@mq.example.com:5671/prod").is_ok());
        let error = check_amqp_url("http://u:hunter2@mq/").unwrap_err();
        assert_eq!(error.setting, "SWITCHBOARD_AMQP_URL");
        assert!(
            error.problem.contains("unsupported scheme `http://`"),
            "{error}"
        );
        let error = check_amqp_url("amqp//u:hunter2@mq").unwrap_err();
        assert!(!error.to_string().contains("hunter2"), "{error}");
        assert!(check_redis_urls("rediss://u:p@a:6380,rediss://u:p@b:6380").is_ok());
        assert!(check_redis_urls("redis+unix:///run/redis.sock").is_ok());
        for bad in [
            "rediss://a:1,redis://b:2",
            "redis://a:1,unix:///x.sock",
            "memcached://a:1",
            "rediss://h:1/#insecure",
            "",
        ] {
            let error = check_redis_urls(bad).unwrap_err();
            assert_eq!(error.setting, "SWITCHBOARD_REDIS_URL", "{bad}");
        }
    }

    #[test]
    fn an_http_address_needs_a_port() {
        assert!(check_http_addr("0.0.0.0:0").is_ok());
        assert!(check_http_addr("localhost:9464").is_ok());
        assert!(check_http_addr("[::1]:9464").is_ok());
        assert!(check_http_addr("9464").is_err());
        assert!(check_http_addr("localhost:http").is_err());
    }

    #[test]
    fn an_unknown_variable_is_named() {
        let message = "unknown field `tls_ca_filee`, expected one of `amqp_url`";
        assert_eq!(unknown_field(message), Some("tls_ca_filee"));
    }
}
