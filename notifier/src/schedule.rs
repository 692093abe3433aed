//! When a partner-day's digests are due, in the partner's own time zone.
//!
//! Each day gets two passes. The evening pass runs once the send time (21:00 by default) has
//! passed and mails everyone who earned so far. The closing pass runs shortly after the day
//! has ended and mails only those who had no digest yet: customers whose first cashback of the
//! day came after the evening pass, and rewards still travelling through the pipeline at
//! midnight. Both passes skip whoever was already mailed, so running either twice is harmless.

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc};
use chrono_tz::Tz;

/// How long after midnight the closing pass waits: rewards decided a little late (consumer lag)
/// still land on the day they occurred.
pub const CLOSING_GRACE: Duration = Duration::minutes(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pass {
    Evening,
    Closing,
}

impl Pass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Evening => "evening",
            Self::Closing => "closing",
        }
    }
}

/// The passes due at `now` for a partner in `time_zone`: yesterday's closing pass once the
/// grace after midnight is over, today's evening pass once `send_at` has passed.
pub fn due_passes(now: DateTime<Utc>, time_zone: Tz, send_at: NaiveTime) -> Vec<(NaiveDate, Pass)> {
    let local = now.with_timezone(&time_zone);
    let today = local.date_naive();
    let mut due = Vec::with_capacity(2);
    let since_midnight = local.time().signed_duration_since(NaiveTime::MIN);
    if since_midnight >= CLOSING_GRACE
        && let Some(yesterday) = today.pred_opt()
    {
        due.push((yesterday, Pass::Closing));
    }
    if local.time() >= send_at {
        due.push((today, Pass::Evening));
    }
    due
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn jakarta(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        chrono_tz::Asia::Jakarta
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .single()
            .map(|local| local.with_timezone(&Utc))
            .unwrap()
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
    }

    const NINE_PM: NaiveTime = match NaiveTime::from_hms_opt(21, 0, 0) {
        Some(time) => time,
        None => NaiveTime::MIN,
    };

    #[test]
    fn the_evening_pass_is_due_from_the_send_time_in_the_partners_zone() {
        let zone = chrono_tz::Asia::Jakarta;
        // 20:59 in Jakarta is 13:59 UTC: only yesterday's closing pass.
        assert_eq!(
            due_passes(jakarta(2026, 11, 20, 20, 59), zone, NINE_PM),
            vec![(day(2026, 11, 19), Pass::Closing)]
        );
        assert_eq!(
            due_passes(jakarta(2026, 11, 20, 21, 0), zone, NINE_PM),
            vec![(day(2026, 11, 19), Pass::Closing), (day(2026, 11, 20), Pass::Evening)]
        );
        // The same instant is still the afternoon of the 20th in UTC.
        assert_eq!(
            due_passes(jakarta(2026, 11, 20, 21, 0), chrono_tz::UTC, NINE_PM),
            vec![(day(2026, 11, 19), Pass::Closing)]
        );
    }

    #[test]
    fn the_closing_pass_waits_for_the_grace_after_midnight() {
        let zone = chrono_tz::Asia::Jakarta;
        // 00:10 on the 21st: the 20th's evening pass is over, its closing pass not due yet.
        assert_eq!(due_passes(jakarta(2026, 11, 21, 0, 10), zone, NINE_PM), vec![]);
        assert_eq!(
            due_passes(jakarta(2026, 11, 21, 0, 30), zone, NINE_PM),
            vec![(day(2026, 11, 20), Pass::Closing)]
        );
    }

    #[test]
    fn a_send_time_of_midnight_makes_today_due_at_once() {
        let zone = chrono_tz::Asia::Jakarta;
        assert_eq!(
            due_passes(jakarta(2026, 11, 21, 0, 5), zone, NaiveTime::MIN),
            vec![(day(2026, 11, 21), Pass::Evening)]
        );
    }
}
