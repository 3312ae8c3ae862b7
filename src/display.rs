//! Times and durations as people read them, shared by the pages and the command line; times
//! in the viewer's zone (`zone`) and devices in words (`device`).

mod device;
mod zone;

pub use device::{device_name, sign_in_method};
pub use zone::{Moment, Zone, is_choosable, zone_names};

/// Times on pages and in the CLI: UTC, to the second, unambiguous.
pub fn display_time(at: time::OffsetDateTime) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_else(|_| at.to_string())
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
    use super::plain_duration;
    use time::Duration;

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
