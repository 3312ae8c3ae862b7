//! Times in the viewer's time zone: the zone a person chose on their account page
//! (`users.time_zone`), UTC until they choose. The IANA database is jiff's bundled copy, so
//! every instance knows the same zones whatever the host has installed.

use std::sync::OnceLock;

use jiff::{
    Timestamp,
    tz::{Offset, TimeZone, TimeZoneOffsetInfo},
};
use time::OffsetDateTime;

/// The zone a page's times are shown in.
#[derive(Debug, Clone)]
pub struct Zone {
    tz: TimeZone,
}

impl Default for Zone {
    fn default() -> Zone {
        Zone { tz: TimeZone::UTC }
    }
}

impl Zone {
    /// The viewer's stored preference; UTC without one (or with a name this build's
    /// database no longer has: names are only ever added, but a page must not fail on it).
    pub fn of(preference: Option<&str>) -> Zone {
        preference
            .and_then(|name| jiff::tz::db().get(name).ok())
            .map_or_else(Zone::default, |tz| Zone { tz })
    }

    /// `2026-12-05 09:42:10 CET`: to the second, with the zone's abbreviation (or offset).
    /// In UTC this is exactly `display::display_time`.
    pub fn time(&self, at: OffsetDateTime) -> String {
        let stamp = timestamp(at);
        self.exact(stamp, &self.tz.to_offset_info(stamp))
    }

    /// [`Zone::time`] of `stamp`, whose offset and abbreviation here are `info`.
    fn exact(&self, stamp: Timestamp, info: &TimeZoneOffsetInfo<'_>) -> String {
        let mut text = String::with_capacity(32);
        if write_civil(&mut text, info.offset(), stamp, ' ') {
            text.push(' ');
            text.push_str(info.abbreviation());
            return text;
        }
        let zoned = stamp.to_zoned_datetime(self.tz.clone());
        zoned.strftime("%Y-%m-%d %H:%M:%S %Z").to_string()
    }

    /// `at` in this zone by a strftime `pattern` (`%H:%M` for a chart's axis).
    pub fn format(&self, at: OffsetDateTime, pattern: &str) -> String {
        let zoned = timestamp(at).to_zoned_datetime(self.tz.clone());
        zoned.strftime(pattern).to_string()
    }

    /// `at` for a `<time>` element: machine-readable, exact and relative to `now`.
    pub fn moment(&self, at: OffsetDateTime, now: OffsetDateTime) -> Moment {
        let stamp = timestamp(at);
        let info = self.tz.to_offset_info(stamp);
        let mut datetime = String::with_capacity(25);
        let datetime = if write_civil(&mut datetime, info.offset(), stamp, 'T')
            && write_offset(&mut datetime, info.offset())
        {
            datetime
        } else {
            let zoned = stamp.to_zoned_datetime(self.tz.clone());
            zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
        };
        Moment {
            datetime,
            exact: self.exact(stamp, &info),
            relative: self.relative(at, now),
        }
    }

    /// "3 minutes ago", "in 2 hours", "yesterday", "in 3 days", then the date.
    ///
    /// Written here: the relative-time crates (e.g. `timeago`) count elapsed time only, and
    /// "yesterday" is a calendar day in the viewer's zone, which jiff gives us.
    pub fn relative(&self, at: OffsetDateTime, now: OffsetDateTime) -> String {
        let seconds = (at - now).whole_seconds();
        let future = seconds > 0;
        let amount = seconds.unsigned_abs();
        let phrase = |count: u64, unit: &str| {
            let unit = if count == 1 {
                unit.to_owned()
            } else {
                format!("{unit}s")
            };
            if future {
                format!("in {count} {unit}")
            } else {
                format!("{count} {unit} ago")
            }
        };
        if amount < 45 {
            return if future {
                "in a few seconds"
            } else {
                "just now"
            }
            .into();
        }
        if amount < 45 * 60 {
            return phrase(((amount + 30) / 60).max(1), "minute");
        }
        if amount < 22 * 3600 {
            return phrase(((amount + 1800) / 3600).max(1), "hour");
        }
        let day = |t: OffsetDateTime| timestamp(t).to_zoned_datetime(self.tz.clone()).date();
        let days = day(now).duration_until(day(at)).as_secs() / 86_400;
        match days {
            -1 => "yesterday".into(),
            1 => "tomorrow".into(),
            0 => phrase(((amount + 1800) / 3600).max(1), "hour"),
            -6..=6 => phrase(days.unsigned_abs(), "day"),
            _ => format!("on {}", day(at)),
        }
    }

    /// The zone's IANA name (`UTC` for the default).
    pub fn name(&self) -> &str {
        self.tz.iana_name().unwrap_or("UTC")
    }
}

/// A time as a `<time>` element shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moment {
    /// RFC 3339 with the viewer's offset, for `datetime`.
    pub datetime: String,
    /// To the second in the viewer's zone, for the tooltip.
    pub exact: String,
    /// "3 minutes ago", for the text.
    pub relative: String,
}

/// Writes `stamp` at `offset` as `YYYY-MM-DD{separator}HH:MM:SS`, as strftime's
/// `%Y-%m-%d %H:%M:%S` does, digit by digit into a buffer: the account page shows a dozen
/// times, and jiff's format-string interpreter was a sixth of that page's instructions
/// (benches/ANALYSIS.md). False, with nothing written, for a year outside 0000–9999 (the
/// caller then asks strftime).
fn write_civil(text: &mut String, offset: Offset, stamp: Timestamp, separator: char) -> bool {
    let civil = offset.to_datetime(stamp);
    let Ok(year) = u16::try_from(civil.year()) else {
        return false;
    };
    if year > 9999 || !separator.is_ascii() {
        return false;
    }
    let mut buffer = *b"0000-00-00 00:00:00";
    put_digits(&mut buffer[0..4], year);
    put_digits(&mut buffer[5..7], civil.month().unsigned_abs().into());
    put_digits(&mut buffer[8..10], civil.day().unsigned_abs().into());
    buffer[10] = separator as u8;
    put_digits(&mut buffer[11..13], civil.hour().unsigned_abs().into());
    put_digits(&mut buffer[14..16], civil.minute().unsigned_abs().into());
    put_digits(&mut buffer[17..19], civil.second().unsigned_abs().into());
    match std::str::from_utf8(&buffer) {
        Ok(written) => {
            text.push_str(written);
            true
        }
        Err(_) => false,
    }
}

/// Writes `offset` as strftime's `%:z` does (`+01:00`). False, with nothing written, for an
/// offset with seconds (local mean time before 1900) or of a day or more: strftime then
/// decides.
fn write_offset(text: &mut String, offset: Offset) -> bool {
    let seconds = offset.seconds();
    let minutes = seconds.unsigned_abs() / 60;
    if seconds % 60 != 0 || minutes >= 24 * 60 {
        return false;
    }
    let mut buffer = *b"+00:00";
    if seconds < 0 {
        buffer[0] = b'-';
    }
    // Both below 100: the casts are exact.
    put_digits(&mut buffer[1..3], (minutes / 60) as u16);
    put_digits(&mut buffer[4..6], (minutes % 60) as u16);
    match std::str::from_utf8(&buffer) {
        Ok(written) => {
            text.push_str(written);
            true
        }
        Err(_) => false,
    }
}

/// Fills `slot` with the last `slot.len()` decimal digits of `value`, zero-padded.
fn put_digits(slot: &mut [u8], mut value: u16) {
    for digit in slot.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

fn timestamp(at: OffsetDateTime) -> Timestamp {
    Timestamp::new(at.unix_timestamp(), at.nanosecond() as i32).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The zones people can choose: the geographic IANA names (`Europe/Paris`, including the
/// older aliases browsers still report, such as `Asia/Calcutta`) and `UTC`, sorted.
pub fn zone_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        const REGIONS: [&str; 10] = [
            "Africa",
            "America",
            "Antarctica",
            "Arctic",
            "Asia",
            "Atlantic",
            "Australia",
            "Europe",
            "Indian",
            "Pacific",
        ];
        let mut names: Vec<String> = jiff::tz::db()
            .available()
            .map(|name| name.to_string())
            .filter(|name| {
                name.split_once('/')
                    .is_some_and(|(region, _)| REGIONS.contains(&region))
            })
            .collect();
        names.push("UTC".into());
        names.sort();
        names.dedup();
        names
    })
}

/// Whether `name` is one of [`zone_names`], exactly.
pub fn is_choosable(name: &str) -> bool {
    zone_names()
        .binary_search_by(|n| n.as_str().cmp(name))
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::{Zone, is_choosable, zone_names};
    use time::macros::datetime;

    #[test]
    fn the_digit_by_digit_times_read_exactly_as_strftime_writes_them() {
        use super::timestamp;
        // Whole-hour, half-hour, 45-minute, negative and DST-switching zones, at instants
        // around their transitions and across centuries.
        let zones = [
            "UTC",
            "Europe/Berlin",
            "America/St_Johns",
            "Asia/Kathmandu",
            "Australia/Lord_Howe",
            "Pacific/Chatham",
            "America/Los_Angeles",
            "Pacific/Kiritimati",
        ];
        let mut instants = vec![
            datetime!(1970-01-01 00:00:00 UTC),
            datetime!(1999-12-31 23:59:59 UTC),
            datetime!(2026-03-29 00:59:59 UTC),
            datetime!(2026-03-29 01:00:00 UTC),
            datetime!(2026-10-25 00:59:59.999 UTC),
            datetime!(2026-10-25 01:00:00 UTC),
            datetime!(2026-11-01 09:00:00 UTC),
            datetime!(9999-12-30 12:00:00 UTC),
        ];
        // A stride through a few years, every 7 hours 13 minutes and 17 seconds.
        let mut at = datetime!(2024-01-01 00:00:00 UTC);
        while at < datetime!(2027-01-01 00:00:00 UTC) {
            instants.push(at);
            at += time::Duration::seconds(7 * 3600 + 13 * 60 + 17);
        }
        let now = datetime!(2026-06-01 12:00:00 UTC);
        for name in zones {
            let zone = Zone::of(Some(name));
            assert_eq!(zone.name(), name);
            for &at in &instants {
                let zoned = timestamp(at).to_zoned_datetime(zone.tz.clone());
                assert_eq!(
                    zone.time(at),
                    zoned.strftime("%Y-%m-%d %H:%M:%S %Z").to_string(),
                    "{name} {at}"
                );
                assert_eq!(
                    zone.moment(at, now).datetime,
                    zoned.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                    "{name} {at}"
                );
            }
        }
    }

    #[test]
    fn digits_are_zero_padded() {
        for (value, width, expected) in [
            (0, 2, "00"),
            (7, 2, "07"),
            (42, 2, "42"),
            (5, 4, "0005"),
            (2026, 4, "2026"),
        ] {
            let mut slot = vec![b'x'; width];
            super::put_digits(&mut slot, value);
            assert_eq!(slot, expected.as_bytes());
        }
    }

    #[test]
    fn utc_reads_exactly_as_before() {
        let at = datetime!(2026-01-31 13:05:09 UTC);
        assert_eq!(Zone::of(None).time(at), crate::display::display_time(at));
        assert_eq!(
            Zone::of(Some("Not/AZone")).time(at),
            "2026-01-31 13:05:09 UTC"
        );
    }

    #[test]
    fn times_read_in_the_chosen_zone() {
        let at = datetime!(2026-07-01 12:00:00 UTC);
        assert_eq!(
            Zone::of(Some("Europe/Paris")).time(at),
            "2026-07-01 14:00:00 CEST"
        );
        assert_eq!(
            Zone::of(Some("Asia/Kolkata")).time(at),
            "2026-07-01 17:30:00 IST"
        );
        let moment = Zone::of(Some("America/New_York")).moment(at, at);
        assert_eq!(moment.datetime, "2026-07-01T08:00:00-04:00");
        assert_eq!(moment.exact, "2026-07-01 08:00:00 EDT");
        assert_eq!(moment.relative, "just now");
    }

    #[test]
    fn relative_times_read_as_people_say_them() {
        let utc = Zone::default();
        let now = datetime!(2026-12-05 15:00:00 UTC);
        let cases = [
            (datetime!(2026-12-05 14:59:40 UTC), "just now"),
            (datetime!(2026-12-05 15:00:20 UTC), "in a few seconds"),
            (datetime!(2026-12-05 14:57:00 UTC), "3 minutes ago"),
            (datetime!(2026-12-05 14:59:00 UTC), "1 minute ago"),
            (datetime!(2026-12-05 17:00:00 UTC), "in 2 hours"),
            (datetime!(2026-12-05 14:00:00 UTC), "1 hour ago"),
            (datetime!(2026-12-04 10:00:00 UTC), "yesterday"),
            (datetime!(2026-12-06 16:00:00 UTC), "tomorrow"),
            (datetime!(2026-12-02 09:00:00 UTC), "3 days ago"),
            (datetime!(2026-12-08 09:00:00 UTC), "in 3 days"),
            (datetime!(2026-11-03 09:00:00 UTC), "on 2026-11-03"),
        ];
        for (at, expected) in cases {
            assert_eq!(utc.relative(at, now), expected, "{at}");
        }
        // "Yesterday" is a calendar day in the viewer's zone: 25 hours before 00:30 UTC on
        // the 5th is the 3rd in UTC, but the 4th in Tokyo.
        let at = datetime!(2026-12-03 23:30:00 UTC);
        let now = datetime!(2026-12-05 00:30:00 UTC);
        assert_eq!(utc.relative(at, now), "2 days ago");
        assert_eq!(Zone::of(Some("Asia/Tokyo")).relative(at, now), "yesterday");
    }

    #[test]
    fn the_zone_list_is_geographic_and_sorted() {
        let names = zone_names();
        assert!(names.len() > 300, "{}", names.len());
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        for name in ["Europe/Paris", "America/New_York", "UTC", "Asia/Kolkata"] {
            assert!(is_choosable(name), "{name}");
        }
        for name in [
            "",
            "utc",
            "europe/paris",
            "Etc/GMT+5",
            "Mars/Olympus",
            "../etc",
        ] {
            assert!(!is_choosable(name), "{name}");
        }
    }
}
