//! Period windows in UTC: which day or month a timestamp falls in, and when that window ends.

use aura_core::Timestamp;

use super::Period;

const DAY_MILLIS: i64 = 86_400_000;
const HOUR_MILLIS: i64 = 3_600_000;

/// The window label (`hour:2026-11-21T20`, `day:2026-11-21`, `week:2026-11-16`, `month:2026-11`, `total`) and
/// its exclusive end.
pub(super) fn window(period: Period, now: Timestamp) -> (String, Option<Timestamp>) {
    let day = now.as_millis().div_euclid(DAY_MILLIS);
    match period {
        Period::Total => ("total".to_owned(), None),
        Period::Hour => {
            let hour = now.as_millis().div_euclid(HOUR_MILLIS);
            let (y, m, d) = civil_from_days(day);
            let h = hour.rem_euclid(24);
            (
                format!("hour:{y:04}-{m:02}-{d:02}T{h:02}"),
                Some(Timestamp::from_millis(
                    (hour + 1).saturating_mul(HOUR_MILLIS),
                )),
            )
        }
        Period::Week => {
            // 1970-01-01 was a Thursday: days since the epoch + 3, mod 7, is days since Monday.
            let monday = day - (day + 3).rem_euclid(7);
            let (y, m, d) = civil_from_days(monday);
            (
                format!("week:{y:04}-{m:02}-{d:02}"),
                Some(Timestamp::from_millis(
                    (monday + 7).saturating_mul(DAY_MILLIS),
                )),
            )
        }
        Period::Day => {
            let (y, m, d) = civil_from_days(day);
            (
                format!("day:{y:04}-{m:02}-{d:02}"),
                Some(Timestamp::from_millis((day + 1).saturating_mul(DAY_MILLIS))),
            )
        }
        Period::Month => {
            let (y, m, _) = civil_from_days(day);
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            let end = days_from_civil(ny, nm, 1).saturating_mul(DAY_MILLIS);
            (
                format!("month:{y:04}-{m:02}"),
                Some(Timestamp::from_millis(end)),
            )
        }
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_utc_days_and_months() {
        // 2026-11-21T20:19:31.042Z
        let t = Timestamp::from_millis(1_795_292_371_042);
        let (label, end) = window(Period::Day, t);
        assert_eq!(label, "day:2026-11-21");
        assert_eq!(end.unwrap().to_rfc3339(), "2026-11-22T00:00:00.000Z");
        let (label, end) = window(Period::Month, t);
        assert_eq!(label, "month:2026-11");
        assert_eq!(end.unwrap().to_rfc3339(), "2026-12-01T00:00:00.000Z");
        let dec = Timestamp::from_millis(end.unwrap().as_millis() + 5);
        let (label, end) = window(Period::Month, dec);
        assert_eq!(label, "month:2026-12");
        assert_eq!(end.unwrap().to_rfc3339(), "2027-01-01T00:00:00.000Z");
        assert_eq!(window(Period::Total, t), ("total".to_owned(), None));
        let (label, end) = window(Period::Hour, t);
        assert_eq!(label, "hour:2026-11-21T20");
        assert_eq!(end.unwrap().to_rfc3339(), "2026-11-21T21:00:00.000Z");
        // 2026-11-21 is a Saturday: its week began on Monday 2026-11-16.
        let (label, end) = window(Period::Week, t);
        assert_eq!(label, "week:2026-11-16");
        assert_eq!(end.unwrap().to_rfc3339(), "2026-11-23T00:00:00.000Z");
        let leap = Timestamp::from_millis(951_782_400_000); // 2000-02-29
        assert_eq!(window(Period::Day, leap).0, "day:2000-02-29");
        assert_eq!(
            window(Period::Month, leap).1.unwrap().to_rfc3339(),
            "2000-03-01T00:00:00.000Z"
        );
    }

    #[test]
    fn day_round_trips_through_the_calendar() {
        for day in [-800_000, -1, 0, 1, 59, 10_957, 20_413, 2_000_000] {
            let (y, m, d) = civil_from_days(day);
            assert_eq!(days_from_civil(y, m, d), day);
        }
    }
}
