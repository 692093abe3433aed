//! When a partner-day's digests are due, in the partner's own time zone.
//!
//! Each day gets two passes. The evening pass runs once the send time (21:00 by default) has
//! passed and mails everyone who earned so far. The closing pass runs shortly after the day
//! has ended and mails only those who had no digest yet: customers whose first cashback of the
//! day came after the evening pass, and rewards still travelling through the pipeline at
//! midnight. Both passes skip whoever was already mailed, so running either twice is harmless.
//!
//! A leader also runs the closing pass of every earlier day within a catch-up horizon (7 days
//! by default) once per term: after an outage of more than a day (every replica down over a
//! weekend) the days it missed still get their digests, and for days that were complete the
//! pass finds everyone mailed and sends nothing.

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

/// The passes due at `now` for a partner in `time_zone`, oldest first: the closing passes of
/// the days before yesterday back to `catch_up_days` ago, yesterday's closing pass once the
/// grace after midnight is over, today's evening pass once `send_at` has passed.
pub fn due_passes(
    now: DateTime<Utc>,
    time_zone: Tz,
    send_at: NaiveTime,
    catch_up_days: u32,
) -> Vec<(NaiveDate, Pass)> {
    let local = now.with_timezone(&time_zone);
    let today = local.date_naive();
    let mut due = Vec::with_capacity(2 + catch_up_days as usize);
    for back in (2..=u64::from(catch_up_days)).rev() {
        if let Some(day) = today.checked_sub_days(chrono::Days::new(back)) {
            due.push((day, Pass::Closing));
        }
    }
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
            due_passes(jakarta(2026, 11, 20, 20, 59), zone, NINE_PM, 0),
            vec![(day(2026, 11, 19), Pass::Closing)]
        );
        assert_eq!(
            due_passes(jakarta(2026, 11, 20, 21, 0), zone, NINE_PM, 0),
            vec![(day(2026, 11, 19), Pass::Closing), (day(2026, 11, 20), Pass::Evening)]
        );
        // The same instant is still the afternoon of the 20th in UTC.
        assert_eq!(
            due_passes(jakarta(2026, 11, 20, 21, 0), chrono_tz::UTC, NINE_PM, 0),
            vec![(day(2026, 11, 19), Pass::Closing)]
        );
    }

    #[test]
    fn the_closing_pass_waits_for_the_grace_after_midnight() {
        let zone = chrono_tz::Asia::Jakarta;
        // 00:10 on the 21st: the 20th's evening pass is over, its closing pass not due yet.
        assert_eq!(due_passes(jakarta(2026, 11, 21, 0, 10), zone, NINE_PM, 0), vec![]);
        assert_eq!(
            due_passes(jakarta(2026, 11, 21, 0, 30), zone, NINE_PM, 0),
            vec![(day(2026, 11, 20), Pass::Closing)]
        );
    }

    #[test]
    fn earlier_days_within_the_horizon_get_their_closing_pass_oldest_first() {
        let zone = chrono_tz::Asia::Jakarta;
        assert_eq!(
            due_passes(jakarta(2026, 11, 21, 0, 10), zone, NINE_PM, 4),
            vec![
                (day(2026, 11, 17), Pass::Closing),
                (day(2026, 11, 18), Pass::Closing),
                (day(2026, 11, 19), Pass::Closing)
            ]
        );
        assert_eq!(
            due_passes(jakarta(2026, 11, 21, 22, 0), zone, NINE_PM, 2),
            vec![
                (day(2026, 11, 19), Pass::Closing),
                (day(2026, 11, 20), Pass::Closing),
                (day(2026, 11, 21), Pass::Evening)
            ]
        );
        // A horizon of one day (or none) is yesterday alone.
        assert_eq!(
            due_passes(jakarta(2026, 11, 21, 1, 0), zone, NINE_PM, 1),
            vec![(day(2026, 11, 20), Pass::Closing)]
        );
    }

    #[test]
    fn a_send_time_of_midnight_makes_today_due_at_once() {
        let zone = chrono_tz::Asia::Jakarta;
        assert_eq!(
            due_passes(jakarta(2026, 11, 21, 0, 5), zone, NaiveTime::MIN, 0),
            vec![(day(2026, 11, 21), Pass::Evening)]
        );
    }
}
