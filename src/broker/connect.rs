//! Reaching the broker: the URL as configured (`amqp://` or `amqps://`, user, password,
//! vhost), TLS with the system's trust store plus the configured CA and client certificate,
//! and telling a refusal (credentials, permissions, certificates: the operator must act) from
//! an outage (the broker down or restarting: it heals by itself).

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};

use super::BrokerError;
use crate::config::Config;

/// AMQP reply codes that mean "not with these credentials or permissions".
const ACCESS_REFUSED: u16 = 403;
const NOT_ALLOWED: u16 = 530;
/// The reply to declaring a queue or exchange that exists with another type or other arguments.
const PRECONDITION_FAILED: u16 = 406;

/// The heartbeat (seconds) a worker asks the broker for unless its URL names one
/// (`?heartbeat=N`; the broker's own wins if it is shorter). A connection on which nothing has
/// been heard for twice the heartbeat is closed, so a broker gone silent (a network path that
/// drops everything and resets nothing: a NAT or load balancer that forgot the connection, a
/// frozen host) is noticed in about 20 s and the session opened again, where RabbitMQ's
/// default of 60 s would leave the worker waiting two minutes, ready all the while.
const HEARTBEAT_SECONDS: u16 = 10;

/// Opens a connection as `config.amqp_url` says, with the configured TLS material.
pub async fn open(
    config: &Config,
    properties: ConnectionProperties,
) -> Result<Connection, BrokerError> {
    let tls = config.tls_files().load()?;
    let uri = uri(config.amqp_url.as_str())?;
    let user = uri.authority.userinfo.username.clone();
    let vhost = uri.vhost.clone();
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connect_uri_with_config(uri, properties, tls.amqp(), runtime)
        .await
        .map_err(|error| refusal(&error, &user, &vhost).unwrap_or(BrokerError::Amqp(error)))
}

/// The URL as lapin reads it, asking for [`HEARTBEAT_SECONDS`] unless it names a heartbeat;
/// an error names the setting and shows the URL redacted.
fn uri(url: &str) -> Result<AMQPUri, BrokerError> {
    let mut uri: AMQPUri = url.parse().map_err(|_| {
        BrokerError::Settings(crate::config::SettingError::new(
            "amqp_url",
            format!("{} is not an AMQP URL", crate::secret::redact_url(url)),
        ))
    })?;
    uri.query.heartbeat.get_or_insert(HEARTBEAT_SECONDS);
    Ok(uri)
}

/// The refusal this error is, if it is one, said plainly.
fn refusal(error: &lapin::Error, user: &str, vhost: &str) -> Option<BrokerError> {
    if let lapin::ErrorKind::ProtocolError(amqp) = error.kind() {
        let (code, message) = (amqp.get_id(), amqp.get_message().as_str());
        return match code {
            ACCESS_REFUSED => Some(BrokerError::Refused(format!(
                "the broker refused user `{user}` on vhost `{vhost}` (wrong password, or no permission): {message}"
            ))),
            NOT_ALLOWED => Some(BrokerError::Refused(format!(
                "the broker does not let user `{user}` in vhost `{vhost}` (missing vhost, or no access to it): {message}"
            ))),
            _ => None,
        };
    }
    crate::config::tls::refusal(error)
        .map(|why| BrokerError::Refused(format!("TLS with the broker: {why}")))
}

/// A declaration the broker refused because a queue or exchange of that name already exists,
/// declared otherwise (a classic queue where Switchboard declares a quorum queue, another
/// dead-letter exchange, another type), said plainly. Every declaration of Switchboard's own
/// queues and exchanges, the timer ladder's included, is the session's topology and goes
/// through here. Like a refusal, it lasts until someone deletes that queue or exchange or
/// gives Switchboard other names: the worker retries slowly at error level, not as an outage.
pub fn declaration_conflict(error: lapin::Error) -> BrokerError {
    if let lapin::ErrorKind::ProtocolError(amqp) = error.kind() {
        if amqp.get_id() == PRECONDITION_FAILED {
            return BrokerError::Refused(format!(
                "the broker already has a queue or exchange of that name declared otherwise \
                 than Switchboard declares it: delete it, or name Switchboard's own \
                 (SWITCHBOARD_WORK_QUEUE, SWITCHBOARD_INBOUND_EXCHANGE, …): {}",
                amqp.get_message()
            ));
        }
    }
    BrokerError::Amqp(error)
}

impl BrokerError {
    /// True when retrying cannot help until someone changes credentials, permissions or
    /// certificates: the worker then retries slowly and says so at error level.
    pub fn is_refusal(&self) -> bool {
        match self {
            BrokerError::Refused(_) | BrokerError::Settings(_) => true,
            BrokerError::Amqp(error) => match error.kind() {
                lapin::ErrorKind::ProtocolError(amqp) => {
                    matches!(amqp.get_id(), ACCESS_REFUSED | NOT_ALLOWED)
                }
                _ => false,
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_gives_host_user_and_vhost() {
        let parsed = uri("amqps://u:p@10.1.2.3:5671/prod").unwrap();
        assert_eq!(parsed.authority.host, "10.1.2.3");
        assert_eq!(parsed.authority.port, 5671);
        assert_eq!(parsed.authority.userinfo.username, "u");
        assert_eq!(parsed.vhost, "prod");
    }

    #[test]
    fn the_heartbeat_is_ten_seconds_unless_the_url_names_one() {
        let heartbeat = |url: &str| uri(url).unwrap().query.heartbeat;
        assert_eq!(heartbeat("amqp://u:p@h/v"), Some(10));
        assert_eq!(heartbeat("amqp://u:p@h/v?heartbeat=30"), Some(30));
        // 0: the broker's heartbeat, whatever it is.
        assert_eq!(heartbeat("amqp://u:p@h/v?heartbeat=0"), Some(0));
    }

    #[test]
    fn a_bad_url_is_a_setting_error_without_its_password() {
        let error = uri("amqp://u:hunter2@/").err().unwrap().to_string();
        assert!(!error.contains("hunter2"), "{error}");
    }
}
