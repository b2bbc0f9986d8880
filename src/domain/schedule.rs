//! Agent schedules: online during weekly hours in the agent's own time zone, offline outside.
//!
//! Evaluated in Rust (Redis's Lua has no time-zone data): the worker tells the store whether an
//! agent's schedule says online now and when that next changes, and the store arms a timer for
//! that instant. Local times are turned into instants with the zone's rules of that day, so a
//! DST change moves the instant, not the local hour. A local time that does not exist (the hour
//! skipped in spring) starts at the first instant after the gap; one that exists twice (the
//! hour repeated in autumn) at its first occurrence.

use chrono::{DateTime, Datelike, Duration, NaiveDate};
use chrono_tz::Tz;
use serde_json::Value;

use super::calendar::local_instant;
use crate::contract::agents::{parse_hhmm, Schedule as Hours, DAYS};

/// A weekly schedule in one time zone: ranges of minutes since local midnight, Monday first.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    zone: Tz,
    hours: [Vec<(u32, u32)>; 7],
}

/// What a schedule says at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleState {
    pub online: bool,
    /// When the state next changes (ms since the epoch); `None` if it never does.
    pub next_change_ms: Option<i64>,
}

impl Schedule {
    /// The schedule an agent's weekly hours say (already checked by the contract).
    pub fn new(given: &Hours) -> Option<Schedule> {
        let zone: Tz = given.timezone.parse().ok()?;
        let mut hours: [Vec<(u32, u32)>; 7] = Default::default();
        for (day, ranges) in &given.hours {
            let index = DAYS.iter().position(|d| d == day)?;
            for [start, end] in ranges {
                hours[index].push((parse_hhmm(start)?, parse_hhmm(end)?));
            }
        }
        Some(Schedule { zone, hours })
    }

    /// Online now, and when that changes.
    pub fn state_at(&self, now_ms: i64) -> ScheduleState {
        let now = DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
        let today = now.with_timezone(&self.zone).date_naive();
        // Every range from yesterday to a week ahead, as instants, merged where they touch.
        let mut intervals: Vec<(i64, i64)> = vec![];
        for offset in -1..=8 {
            let date = today + Duration::days(offset);
            let weekday = date.weekday().num_days_from_monday() as usize;
            for &(start, end) in &self.hours[weekday] {
                intervals.push((self.instant(date, start), self.instant(date, end)));
            }
        }
        intervals.sort();
        let mut merged: Vec<(i64, i64)> = vec![];
        for (start, end) in intervals {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        if let Some(&(_, end)) = merged.iter().find(|(s, e)| *s <= now_ms && now_ms < *e) {
            return ScheduleState {
                online: true,
                next_change_ms: Some(end),
            };
        }
        let next = merged.iter().map(|(s, _)| *s).find(|s| *s > now_ms);
        ScheduleState {
            online: false,
            next_change_ms: next,
        }
    }

    /// The instant of `minutes` after local midnight of `date` (1440 = the next midnight).
    fn instant(&self, date: NaiveDate, minutes: u32) -> i64 {
        let (date, minutes) = if minutes >= 24 * 60 {
            (date + Duration::days(1), minutes - 24 * 60)
        } else {
            (date, minutes)
        };
        let local = date
            .and_hms_opt(minutes / 60, minutes % 60, 0)
            .expect("valid time");
        local_instant(self.zone, local)
    }
}

/// The event data the store's script gets: what each schedule in it says now is added as
/// `_schedule` ({"online", "next_ms"}), since the script cannot read time zones itself.
pub fn script_data(kind: &crate::contract::EventKind, now_ms: i64) -> Value {
    use crate::contract::EventKind;
    let mut data = serde_json::to_value(kind).expect("event data serializes");
    let state = |schedule: &Hours| {
        Schedule::new(schedule).map(|s| {
            let state = s.state_at(now_ms);
            serde_json::json!({"online": state.online, "next_ms": state.next_change_ms})
        })
    };
    match kind {
        EventKind::AgentUpserted(upserted) => {
            let patches = data["agents"].as_array_mut().into_iter().flatten();
            for (patch, given) in patches.zip(&upserted.agents) {
                if let Some(annotation) = given
                    .schedule
                    .as_ref()
                    .and_then(|s| s.as_ref())
                    .and_then(state)
                {
                    patch["_schedule"] = annotation;
                }
            }
        }
        EventKind::TimerFired(timer) => {
            if let Some(annotation) = timer.schedule.as_ref().and_then(state) {
                data["_schedule"] = annotation;
            }
        }
        _ => {}
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::tests::ms;
    use serde_json::json;

    fn paris(hours: Value) -> Schedule {
        let given: Hours =
            serde_json::from_value(json!({"timezone": "Europe/Paris", "hours": hours})).unwrap();
        Schedule::new(&given).unwrap()
    }

    #[test]
    fn online_during_hours_offline_outside() {
        // 2026-11-23 is a Monday; Paris is UTC+1 in November.
        let s = paris(json!({"mon": [["09:00", "17:30"]]}));
        let before = s.state_at(ms("2026-11-23T07:59:00Z"));
        assert_eq!(
            before,
            ScheduleState {
                online: false,
                next_change_ms: Some(ms("2026-11-23T08:00:00Z"))
            }
        );
        let during = s.state_at(ms("2026-11-23T08:00:00Z"));
        assert_eq!(
            during,
            ScheduleState {
                online: true,
                next_change_ms: Some(ms("2026-11-23T16:30:00Z"))
            }
        );
        // After Monday's hours: next Monday.
        let after = s.state_at(ms("2026-11-23T16:30:00Z"));
        assert_eq!(
            after,
            ScheduleState {
                online: false,
                next_change_ms: Some(ms("2026-11-30T08:00:00Z"))
            }
        );
    }

    #[test]
    fn midnight_ends_a_day_and_touching_ranges_merge() {
        let s = paris(json!({"fri": [["13:00", "24:00"]], "sat": [["00:00", "02:00"]]}));
        // Friday 2026-11-27 20:00 local: online until Saturday 02:00 local, not midnight.
        let state = s.state_at(ms("2026-11-27T19:00:00Z"));
        assert_eq!(
            state,
            ScheduleState {
                online: true,
                next_change_ms: Some(ms("2026-11-28T01:00:00Z"))
            }
        );
    }

    #[test]
    fn a_schedule_crossing_the_spring_dst_change() {
        // Paris moves from UTC+1 to UTC+2 at 02:00 local on Sunday 2026-03-29.
        let s = paris(json!({"sat": [["09:00", "18:00"]], "sun": [["09:00", "17:00"]]}));
        // Saturday 18:00 local (17:00 UTC): off until Sunday 09:00 local, which is 07:00 UTC:
        // 14 hours later, not the 15 the local clock shows.
        let saturday_evening = ms("2026-03-28T17:00:00Z");
        let state = s.state_at(saturday_evening);
        assert!(!state.online);
        assert_eq!(state.next_change_ms, Some(ms("2026-03-29T07:00:00Z")));
        assert_eq!(
            state.next_change_ms.unwrap() - saturday_evening,
            14 * 3600 * 1000
        );
    }

    #[test]
    fn hours_inside_the_skipped_hour_start_after_the_gap() {
        // 02:30 does not exist in Paris on 2026-03-29: the range starts at 03:00 local (01:00 UTC).
        let s = paris(json!({"sun": [["02:30", "04:00"]]}));
        let state = s.state_at(ms("2026-03-29T00:00:00Z"));
        assert_eq!(state.next_change_ms, Some(ms("2026-03-29T01:00:00Z")));
    }

    #[test]
    fn autumn_dst_and_empty_schedules() {
        // Paris goes back to UTC+1 at 03:00 local on 2026-10-25: 17:00 local is 16:00 UTC.
        let s = paris(json!({"sun": [["09:00", "17:00"]]}));
        let state = s.state_at(ms("2026-10-25T08:00:00Z"));
        assert_eq!(
            state,
            ScheduleState {
                online: true,
                next_change_ms: Some(ms("2026-10-25T16:00:00Z"))
            }
        );
        let never = paris(json!({}));
        assert_eq!(
            never.state_at(0),
            ScheduleState {
                online: false,
                next_change_ms: None
            }
        );
    }
}
