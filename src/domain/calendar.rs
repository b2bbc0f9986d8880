//! Calendar arithmetic the store's scripts cannot do: Lua in Redis has no time-zone data.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// The date (`YYYY-MM-DD`) at `now_ms` in `zone`: the project's day, for daily limits.
pub fn local_date(now_ms: i64, zone: Tz) -> String {
    let instant: DateTime<Utc> = DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    instant.with_timezone(&zone).format("%Y-%m-%d").to_string()
}

/// The next local midnight after `now_ms` in `zone` (ms since the epoch), when daily counts
/// start again. A midnight skipped by DST is the first instant of the new day.
pub fn next_midnight(now_ms: i64, zone: Tz) -> i64 {
    let instant: DateTime<Utc> = DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
    let tomorrow = instant.with_timezone(&zone).date_naive() + chrono::Duration::days(1);
    let midnight = tomorrow
        .and_hms_opt(0, 0, 0)
        .expect("midnight exists as a time");
    local_instant(zone, midnight)
}

/// The instant (ms since the epoch) of a local time in `zone`. A local time that does not exist
/// (the hour skipped in spring) is the first instant after the gap; one that exists twice (the
/// hour repeated in autumn) is its first occurrence.
pub fn local_instant(zone: Tz, mut local: chrono::NaiveDateTime) -> i64 {
    use chrono::{LocalResult, TimeZone};
    for _ in 0..=180 {
        match zone.from_local_datetime(&local) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.timestamp_millis(),
            LocalResult::None => local += chrono::Duration::minutes(1),
        }
    }
    unreachable!("no DST gap is three hours long")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An RFC 3339 instant in ms since the epoch (the domain's tests write instants this way).
    pub(crate) fn ms(rfc3339: &str) -> i64 {
        DateTime::parse_from_rfc3339(rfc3339)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn the_day_turns_at_local_midnight() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        // 14:59 UTC is 23:59 in Tokyo; 15:00 UTC is already tomorrow there.
        assert_eq!(local_date(ms("2026-11-22T14:59:00Z"), tokyo), "2026-11-22");
        assert_eq!(local_date(ms("2026-11-22T15:00:00Z"), tokyo), "2026-11-23");
        assert_eq!(
            local_date(ms("2026-11-22T15:00:00Z"), chrono_tz::UTC),
            "2026-11-22"
        );
    }

    #[test]
    fn the_next_midnight_is_local() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        assert_eq!(
            next_midnight(ms("2026-11-22T14:30:00Z"), tokyo),
            ms("2026-11-22T15:00:00Z")
        );
        assert_eq!(
            next_midnight(ms("2026-11-22T15:00:00Z"), tokyo),
            ms("2026-11-23T15:00:00Z")
        );
    }

    #[test]
    fn daylight_saving_moves_midnight() {
        let paris: Tz = "Europe/Paris".parse().unwrap();
        // Summer (UTC+2): local midnight is 22:00 UTC; winter (UTC+1): 23:00 UTC.
        assert_eq!(local_date(ms("2026-07-01T22:00:00Z"), paris), "2026-07-02");
        assert_eq!(local_date(ms("2026-12-01T22:00:00Z"), paris), "2026-12-01");
        assert_eq!(local_date(ms("2026-12-01T23:00:00Z"), paris), "2026-12-02");
    }
}
