//! The CloudEvents 1.0 envelope (structured JSON mode) around every event.

use serde_json::{Map, Value};

use super::{quote, Id, Rejection};

/// The largest body a worker accepts.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// Longest event `id` accepted. CloudEvents sets no limit; ours keeps dedupe records small.
pub const MAX_EVENT_ID_LEN: usize = 256;

/// The envelope attributes of an inbound event, with `data` still untyped.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub id: String,
    pub source: String,
    pub event_type: String,
    /// `time`, in microseconds since the epoch: the order the platform states (see
    /// [`InboundEvent::time_us`](super::InboundEvent::time_us)).
    pub time_us: Option<i64>,
    pub project: Id,
    pub data: Value,
}

impl Envelope {
    /// Checks size, JSON, and the CloudEvents attributes the contract requires.
    pub fn parse(body: &[u8]) -> Result<Envelope, Rejection> {
        if body.len() > MAX_EVENT_BYTES {
            return Err(Rejection::TooLarge(body.len()));
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| Rejection::InvalidJson(e.to_string()))?;
        let Value::Object(mut object) = value else {
            return Err(Rejection::NotCloudEvent(
                "the body is not a JSON object".into(),
            ));
        };

        match object.get("specversion") {
            Some(Value::String(v)) if v == "1.0" => {}
            Some(other) => {
                return Err(Rejection::NotCloudEvent(format!(
                    "specversion must be \"1.0\", got {}",
                    quote(&other.to_string())
                )))
            }
            None => return Err(Rejection::MissingField("specversion".into())),
        }
        let id = required_string(&object, "id")?;
        if id.len() > MAX_EVENT_ID_LEN {
            return Err(Rejection::invalid(
                "id",
                format!("longer than {MAX_EVENT_ID_LEN} characters"),
            ));
        }
        let source = required_string(&object, "source")?;
        let event_type = required_string(&object, "type")?;
        let time_us = match object.get("time") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(time_us(t)?),
            Some(_) => return Err(Rejection::invalid("time", "must be a string")),
        };
        if let Some(content_type) = object.get("datacontenttype") {
            let ok = content_type
                .as_str()
                .is_some_and(|t| t.starts_with("application/json"));
            if !ok {
                return Err(Rejection::invalid(
                    "datacontenttype",
                    "must be application/json",
                ));
            }
        }
        let project = required_string(&object, "project")?;
        let project = Id::parse(&project)
            .map_err(|e| Rejection::invalid("project", format!("{} {e}", quote(&project))))?;
        let data = match object.remove("data") {
            Some(data @ Value::Object(_)) => data,
            Some(_) => return Err(Rejection::invalid("data", "must be a JSON object")),
            None => return Err(Rejection::MissingField("data".into())),
        };
        Ok(Envelope {
            id,
            source,
            event_type,
            time_us,
            project,
            data,
        })
    }
}

/// A CloudEvents 1.0 event in structured JSON mode, built to be published: the one builder
/// of every producer (outputs, timers, the demo, `simulate`, the benchmark, the tests), so
/// that they all write the same envelope.
#[derive(Debug, Clone)]
pub struct CloudEvent {
    body: Map<String, Value>,
}

impl CloudEvent {
    /// An event of `project` with its id, `type` and data; its source is `source`.
    pub fn new(
        project: &str,
        id: impl Into<String>,
        source: &str,
        event_type: &str,
        data: Value,
    ) -> CloudEvent {
        let mut body = Map::new();
        body.insert("specversion".into(), "1.0".into());
        body.insert("id".into(), Value::String(id.into()));
        body.insert("source".into(), source.into());
        body.insert("type".into(), event_type.into());
        body.insert("project".into(), project.into());
        body.insert("data".into(), data);
        CloudEvent { body }
    }

    /// Its `time`, as RFC 3339 text (the order a platform states, see the contract).
    pub fn time(mut self, time: impl Into<String>) -> CloudEvent {
        self.body.insert("time".into(), Value::String(time.into()));
        self
    }

    /// Its `time`, in ms since the epoch, written with millisecond precision.
    pub fn time_ms(self, ms: i64) -> CloudEvent {
        let time = chrono::DateTime::from_timestamp_millis(ms)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        self.time(time)
    }

    /// Any other attribute (an extension such as `causationid`, or `datacontenttype`).
    pub fn attribute(mut self, name: &str, value: impl Into<Value>) -> CloudEvent {
        self.body.insert(name.into(), value.into());
        self
    }

    /// The JSON body.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).expect("a JSON map always serializes")
    }
}

/// An RFC 3339 timestamp in microseconds since the epoch. Finer digits are dropped: two events
/// of one thing less than a microsecond apart count as simultaneous.
fn time_us(text: &str) -> Result<i64, Rejection> {
    let instant = chrono::DateTime::parse_from_rfc3339(text)
        .map_err(|_| Rejection::invalid("time", "not an RFC 3339 timestamp"))?;
    // From 1970 to 2262, so that the number is exact in the store's Lua (below 2^53).
    match instant.timestamp_nanos_opt() {
        Some(nanos) if nanos >= 0 => Ok(nanos / 1000),
        _ => Err(Rejection::invalid("time", "must be between 1970 and 2262")),
    }
}

fn required_string(object: &Map<String, Value>, field: &str) -> Result<String, Rejection> {
    match object.get(field) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(Rejection::invalid(field, "must not be empty")),
        Some(Value::Null) | None => Err(Rejection::MissingField(field.into())),
        Some(_) => Err(Rejection::invalid(field, "must be a string")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(mutate: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let built = CloudEvent::new(
            "acme",
            "e1",
            "/platform/acme",
            "conversation.created",
            json!({"conversation_id": "c1", "visitor_id": "v1"}),
        )
        .time("2026-11-22T10:00:00Z")
        .to_bytes();
        let mut value: Value = serde_json::from_slice(&built).unwrap();
        mutate(value.as_object_mut().unwrap());
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn parses_a_valid_envelope() {
        let envelope = Envelope::parse(&event(|_| {})).unwrap();
        assert_eq!(envelope.id, "e1");
        assert_eq!(envelope.project.as_str(), "acme");
        assert_eq!(envelope.event_type, "conversation.created");
        assert_eq!(envelope.time_us, Some(1_795_341_600_000_000));
    }

    #[test]
    fn time_keeps_microseconds_and_any_offset() {
        let at = |t: &str| {
            Envelope::parse(&event(|o| {
                o.insert("time".into(), json!(t));
            }))
            .unwrap()
            .time_us
        };
        assert_eq!(
            at("2026-11-22T10:00:00.000001Z"),
            Some(1_795_341_600_000_001)
        );
        assert_eq!(
            at("2026-11-22T11:00:00.5+01:00"),
            Some(1_795_341_600_500_000)
        );
        // Nanoseconds beyond the microsecond are dropped.
        assert_eq!(
            at("2026-11-22T10:00:00.0000019Z"),
            Some(1_795_341_600_000_001)
        );
        let none = Envelope::parse(&event(|o| {
            o.remove("time");
        }))
        .unwrap();
        assert_eq!(none.time_us, None);
        let before_1970 = Envelope::parse(&event(|o| {
            o.insert("time".into(), json!("1969-12-31T23:59:59Z"));
        }));
        assert!(before_1970.unwrap_err().to_string().contains("1970"));
    }

    #[test]
    fn rejects_each_broken_attribute_with_its_reason() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"{not json".to_vec(), "invalid JSON"),
            (b"[1,2]".to_vec(), "not a JSON object"),
            (
                event(|o| {
                    o.remove("specversion");
                }),
                "missing required field `specversion`",
            ),
            (
                event(|o| {
                    o.insert("specversion".into(), json!("0.3"));
                }),
                "specversion must be",
            ),
            (
                event(|o| {
                    o.remove("id");
                }),
                "missing required field `id`",
            ),
            (
                event(|o| {
                    o.insert("id".into(), json!(""));
                }),
                "`id`: must not be empty",
            ),
            (
                event(|o| {
                    o.insert("id".into(), json!(7));
                }),
                "`id`: must be a string",
            ),
            (
                event(|o| {
                    o.remove("source");
                }),
                "missing required field `source`",
            ),
            (
                event(|o| {
                    o.remove("project");
                }),
                "missing required field `project`",
            ),
            (
                event(|o| {
                    o.insert("project".into(), json!("ac{me}"));
                }),
                "invalid field `project`",
            ),
            (
                event(|o| {
                    o.insert("time".into(), json!("yesterday"));
                }),
                "RFC 3339",
            ),
            (
                event(|o| {
                    o.remove("data");
                }),
                "missing required field `data`",
            ),
            (
                event(|o| {
                    o.insert("data".into(), json!("x"));
                }),
                "`data`: must be a JSON object",
            ),
        ];
        for (body, expected) in cases {
            let error = Envelope::parse(&body).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn rejects_a_body_over_64_kib() {
        let body = event(|o| {
            o.insert("padding".into(), json!("x".repeat(MAX_EVENT_BYTES)));
        });
        assert!(matches!(
            Envelope::parse(&body),
            Err(Rejection::TooLarge(_))
        ));
    }
}
