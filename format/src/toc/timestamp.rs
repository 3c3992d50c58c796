//! Modification times as stored in the TOC: RFC 3339 in UTC.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A point in time with nanosecond precision, as seconds and nanoseconds since the Unix epoch.
///
/// Serialized as RFC 3339 in UTC (`2019-08-20T10:30:43Z`). Whole seconds are written without a
/// fraction, as stargz-snapshotter writes them; sub-second times (from PAX `mtime` records) get a
/// fraction with trailing zeros removed, which Go's RFC 3339 parser also accepts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp {
    /// Seconds since the Unix epoch; negative before 1970.
    pub secs: i64,
    /// Nanoseconds within the second, below 1 000 000 000.
    pub nanos: u32,
}

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp { secs: 0, nanos: 0 };

    /// Creates a timestamp; `nanos` above 999 999 999 is clamped.
    pub fn new(secs: i64, nanos: u32) -> Self {
        Timestamp {
            secs,
            nanos: nanos.min(999_999_999),
        }
    }

    /// Whether this is the Unix epoch, which the TOC leaves out.
    pub fn is_epoch(&self) -> bool {
        *self == Self::EPOCH
    }

    /// Formats as RFC 3339, or returns `None` when the year is outside 0000-9999.
    pub fn to_rfc3339(&self) -> Option<String> {
        let nanos = i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos);
        let time = OffsetDateTime::from_unix_timestamp_nanos(nanos).ok()?;
        if !(0..=9999).contains(&time.year()) {
            return None;
        }
        let mut text = time.format(&Rfc3339).ok()?;
        if self.nanos != 0 {
            // `time` writes the fraction with as many digits as needed; normalise to the shortest
            // form, without trailing zeros.
            if let Some(dot) = text.find('.') {
                let end = text.len() - 1; // the final 'Z'
                let fraction = text[dot + 1..end].trim_end_matches('0').to_string();
                text = format!("{}.{}Z", &text[..dot], fraction);
            }
        }
        Some(text)
    }

    /// Parses RFC 3339 text (any UTC offset, optional fraction).
    pub fn parse_rfc3339(text: &str) -> Option<Self> {
        let time = OffsetDateTime::parse(text, &Rfc3339).ok()?;
        let nanos = time.unix_timestamp_nanos();
        let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
        let sub = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
        Some(Timestamp { secs, nanos: sub })
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_rfc3339() {
            Some(text) => f.write_str(&text),
            None => write!(f, "{}.{:09}s", self.secs, self.nanos),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_seconds_have_no_fraction() {
        assert_eq!(
            Timestamp::new(1_566_297_043, 0).to_rfc3339().unwrap(),
            "2019-08-20T10:30:43Z"
        );
    }

    #[test]
    fn fraction_is_trimmed() {
        let text = Timestamp::new(1_566_297_043, 120_000_000)
            .to_rfc3339()
            .unwrap();
        assert_eq!(text, "2019-08-20T10:30:43.12Z");
        assert_eq!(
            Timestamp::parse_rfc3339(&text).unwrap(),
            Timestamp::new(1_566_297_043, 120_000_000)
        );
    }

    #[test]
    fn times_before_epoch_round_trip() {
        let t = Timestamp::new(-86_400 * 365, 5);
        let text = t.to_rfc3339().unwrap();
        assert_eq!(Timestamp::parse_rfc3339(&text).unwrap(), t);
    }

    #[test]
    fn offsets_are_converted_to_utc() {
        let t = Timestamp::parse_rfc3339("2019-08-20T12:30:43+02:00").unwrap();
        assert_eq!(t, Timestamp::new(1_566_297_043, 0));
    }

    #[test]
    fn years_past_9999_are_not_formatted() {
        assert!(Timestamp::new(300_000_000_000, 0).to_rfc3339().is_none());
    }
}
