//! A backtest's period: whole partner-local days, so daily caps and the report's days line up
//! with what the ledger recorded.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// The partner-local days `from` to `to`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Period {
    pub from: NaiveDate,
    /// Not before `from`.
    pub to: NaiveDate,
}

impl Period {
    /// The longest period a backtest replays.
    pub const MAX_DAYS: i64 = 366;

    /// Days in the period.
    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    /// The period's instants in the partner's zone: `[start of from, start of the day after to)`.
    pub fn instants(&self, zone: Tz) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = |day: NaiveDate| {
            let midnight = day.and_hms_opt(0, 0, 0).unwrap_or_default();
            // A zone whose clocks skip midnight starts that day at the first instant it has.
            zone.from_local_datetime(&midnight)
                .earliest()
                .unwrap_or_else(|| zone.from_utc_datetime(&midnight))
                .with_timezone(&Utc)
        };
        (start(self.from), start(self.to.succ_opt().unwrap_or(self.to)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_jakarta_period_starts_at_its_local_midnight() {
        let period = Period {
            from: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap(),
        };
        let (from, to) = period.instants(chrono_tz::Asia::Jakarta);
        assert_eq!(from.to_rfc3339(), "2026-10-31T17:00:00+00:00");
        assert_eq!(to.to_rfc3339(), "2026-11-30T17:00:00+00:00");
        assert_eq!(period.days(), 30);
    }
}
