//! The terminal's wall clock for fields 12 and 13 (UTC: the simulator has no time zone setting).

use std::time::{SystemTime, UNIX_EPOCH};

/// The current time as `hhmmss` and date as `MMDD`.
pub fn time_and_date() -> (String, String) {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, of_day) = (seconds / 86_400, seconds % 86_400);
    let time = format!("{:02}{:02}{:02}", of_day / 3600, of_day % 3600 / 60, of_day % 60);
    let (month, day) = month_and_day(days as i64);
    (time, format!("{month:02}{day:02}"))
}

/// Month and day of the civil date `days` after 1970-01-01 (Howard Hinnant's algorithm).
fn month_and_day(days: i64) -> (u32, u32) {
    let z = days + 719_468;
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right_across_leap_years() {
        assert_eq!(month_and_day(0), (1, 1));
        assert_eq!(month_and_day(11_016), (2, 29)); // 2000-02-29
        assert_eq!(month_and_day(20_779), (11, 22)); // 2026-11-22
    }
}
