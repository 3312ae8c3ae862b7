//! Times and durations as people read them, shared by the pages and the command line.

/// Times on pages and in the CLI: UTC, to the second, unambiguous
/// (`2026-01-31 13:05:09 UTC`).
///
/// Written digit by digit: the account page shows a dozen times, and `time`'s format
/// descriptions cost about 1,800 instructions each (a seventh of the page's work in the
/// benchmark's profile); this costs a tenth of that.
pub fn display_time(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let year = match u16::try_from(at.year()) {
        Ok(year) if year <= 9999 => year,
        _ => return at.to_string(),
    };
    let mut out = String::with_capacity(23);
    push_two(&mut out, (year / 100) as u8);
    push_two(&mut out, (year % 100) as u8);
    for (separator, value) in [
        ('-', u8::from(at.month())),
        ('-', at.day()),
        (' ', at.hour()),
        (':', at.minute()),
        (':', at.second()),
    ] {
        out.push(separator);
        push_two(&mut out, value);
    }
    out.push_str(" UTC");
    out
}

/// Appends a number below 100 as two digits.
fn push_two(out: &mut String, value: u8) {
    out.push(char::from(b'0' + value / 10));
    out.push(char::from(b'0' + value % 10));
}

/// "30 minutes", "12 hours", "2 seconds": a duration as people say it.
pub fn plain_duration(duration: time::Duration) -> String {
    let seconds = duration.whole_seconds().max(1);
    let (count, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| seconds % size == 0)
        .map_or((seconds, "second"), |(size, unit)| (seconds / size, unit));
    if count == 1 {
        format!("1 {unit}")
    } else {
        format!("{count} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::{display_time, plain_duration};
    use time::{Duration, OffsetDateTime, UtcOffset, macros::datetime};

    #[test]
    fn times_read_as_utc_to_the_second() {
        let format =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
        for at in [
            datetime!(2026-01-31 13:05:09 UTC),
            datetime!(2026-12-05 00:00:00 UTC),
            datetime!(0999-07-04 23:59:59.999 UTC),
            datetime!(2026-03-01 01:30:00 +05:30),
            OffsetDateTime::now_utc(),
        ] {
            let expected = at
                .to_offset(UtcOffset::UTC)
                .format(&format)
                .expect("format");
            assert_eq!(display_time(at), expected);
        }
        assert_eq!(
            display_time(datetime!(2026-03-01 01:30:00 +05:30)),
            "2026-02-28 20:00:00 UTC"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(plain_duration(Duration::minutes(30)), "30 minutes");
        assert_eq!(plain_duration(Duration::hours(12)), "12 hours");
        assert_eq!(plain_duration(Duration::days(1)), "1 day");
        assert_eq!(plain_duration(Duration::seconds(2)), "2 seconds");
        assert_eq!(plain_duration(Duration::seconds(90)), "90 seconds");
        assert_eq!(plain_duration(Duration::minutes(90)), "90 minutes");
    }
}
