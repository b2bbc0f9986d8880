//! The clock, an edge like the broker and the store: tests move time instead of waiting for it.

/// Milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> i64;

    /// How long `ms` of this clock's time lasts in real time (timers wait in real time).
    fn to_real_ms(&self, ms: i64) -> i64 {
        ms
    }
}

/// The system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that starts at a chosen instant and runs `rate` times faster than real time:
/// `switchboard simulate` compresses a working day into seconds with it, schedules included.
#[derive(Debug, Clone)]
pub struct ScaledClock {
    real_start_ms: i64,
    start_ms: i64,
    rate: f64,
}

impl ScaledClock {
    pub fn new(start_ms: i64, rate: f64) -> ScaledClock {
        ScaledClock {
            real_start_ms: SystemClock.now_ms(),
            start_ms,
            rate: rate.max(1e-6),
        }
    }
}

impl Clock for ScaledClock {
    fn now_ms(&self) -> i64 {
        let real_elapsed = (SystemClock.now_ms() - self.real_start_ms) as f64;
        self.start_ms + (real_elapsed * self.rate) as i64
    }

    fn to_real_ms(&self, ms: i64) -> i64 {
        (ms as f64 / self.rate).ceil() as i64
    }
}

/// An RFC 3339 UTC timestamp with milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
