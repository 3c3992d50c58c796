//! PAX extended header records (POSIX.1-2001, `pax` utility, "pax Extended Header").
//!
//! A record is `"<length> <keyword>=<value>\n"`, where `<length>` is the decimal byte count
//! of the whole record including the length digits themselves. Values are raw bytes:
//! `SCHILY.xattr.*` values may contain NUL and any other byte.

/// One `keyword=value` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaxRecord {
    /// The keyword, such as `path` or `SCHILY.xattr.user.note`.
    pub key: String,
    /// The value bytes, written as they are.
    pub value: Vec<u8>,
}

impl PaxRecord {
    /// Creates a record from a keyword and value bytes.
    pub fn new(key: impl Into<String>, value: impl AsRef<[u8]>) -> Self {
        PaxRecord {
            key: key.into(),
            value: value.as_ref().to_vec(),
        }
    }

    /// Appends the encoded record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // " key=value\n" without the length digits.
        let body = 1 + self.key.len() + 1 + self.value.len() + 1;
        // The length counts its own digits, so grow the digit count until it is stable.
        let mut digits = 1;
        while (body + digits).to_string().len() != digits {
            digits += 1;
        }
        out.extend_from_slice((body + digits).to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.key.as_bytes());
        out.push(b'=');
        out.extend_from_slice(&self.value);
        out.push(b'\n');
    }
}

/// Encodes records in order into the data of one `x` or `g` header.
pub fn encode(records: &[PaxRecord]) -> Vec<u8> {
    let mut out = Vec::new();
    for record in records {
        record.encode_into(&mut out);
    }
    out
}

/// Formats a time as PAX does: seconds, then a dot and nine fraction digits when `nanos`
/// is not zero (for example `1700000000.123456789`).
pub fn format_time(seconds: i64, nanos: u32) -> String {
    if nanos == 0 {
        seconds.to_string()
    } else {
        format!("{seconds}.{nanos:09}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_length_counts_itself() {
        assert_eq!(
            encode(&[PaxRecord::new("path", "a")]),
            b"9 path=a\n".to_vec()
        );
        // Body of 8 bytes needs one digit (9), body of 9 needs two (11).
        assert_eq!(
            encode(&[PaxRecord::new("path", "ab")]),
            b"11 path=ab\n".to_vec()
        );
    }

    #[test]
    fn record_length_crosses_digit_boundary() {
        // " k=" + 94 bytes + "\n" = 98; with 2 digits 100, which needs 3 digits: 101.
        let record = PaxRecord::new("k", vec![b'x'; 94]);
        let encoded = encode(&[record]);
        assert_eq!(encoded.len(), 101);
        assert!(encoded.starts_with(b"101 k="));
    }

    #[test]
    fn binary_value_is_kept_verbatim() {
        let encoded = encode(&[PaxRecord::new("SCHILY.xattr.user.bin", [0u8, 0xff, b'\n'])]);
        assert!(encoded.ends_with(&[b'=', 0, 0xff, b'\n', b'\n']));
    }

    #[test]
    fn fractional_time_has_nine_digits() {
        assert_eq!(format_time(5, 120), "5.000000120");
        assert_eq!(format_time(5, 0), "5");
    }
}
