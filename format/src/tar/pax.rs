//! PAX extended header records: `"<len> <key>=<value>\n"`, where `<len>` counts the whole record.

/// One PAX record. Keys are ASCII in practice; values may be binary (xattrs).
pub type Record = (Vec<u8>, Vec<u8>);

/// Parses the data of a PAX extended header into records, in order.
pub fn parse_records(mut data: &[u8]) -> Result<Vec<Record>, String> {
    let mut records = Vec::new();
    // GNU tar and others pad the header data with NULs; stop at the first one.
    while let Some(&first) = data.first() {
        if first == 0 {
            break;
        }
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("record has no length prefix")?;
        let len_text =
            std::str::from_utf8(&data[..space]).map_err(|_| "record length is not ASCII")?;
        let len: usize = len_text
            .parse()
            .map_err(|_| format!("record length {len_text:?} is not a number"))?;
        if len <= space + 1 || len > data.len() {
            return Err(format!("record length {len} does not fit the header data"));
        }
        let record = &data[space + 1..len];
        let Some((&b'\n', body)) = record.split_last() else {
            return Err("record does not end with a newline".into());
        };
        let equals = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or("record has no '='")?;
        records.push((body[..equals].to_vec(), body[equals + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(records)
}

/// Encodes records into PAX header data.
pub fn encode_records(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        // The length prefix counts its own digits; grow it until it is consistent.
        let body = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    out
}

/// Parses a PAX time value (`seconds[.fraction]`, possibly negative) into seconds and nanoseconds.
pub fn parse_time(value: &[u8]) -> Option<(i64, u32)> {
    let text = std::str::from_utf8(value).ok()?;
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs_text, frac_text) = text.split_once('.').unwrap_or((text, ""));
    if secs_text.is_empty() || !secs_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac_text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs_text.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, digit) in frac_text.bytes().take(9).enumerate() {
        nanos += u32::from(digit - b'0') * 10u32.pow(8 - i as u32);
    }
    if !negative {
        return Some((secs, nanos));
    }
    // -1.25 means 1.25 s before the epoch: seconds -2 plus 0.75 s.
    if nanos == 0 {
        Some((-secs, 0))
    } else {
        Some((-secs - 1, 1_000_000_000 - nanos))
    }
}

/// Formats seconds and nanoseconds as a PAX time value.
pub fn format_time(secs: i64, nanos: u32) -> Vec<u8> {
    if nanos == 0 {
        return secs.to_string().into_bytes();
    }
    let (sign, whole, frac) = if secs < 0 {
        ("-", -(secs + 1), 1_000_000_000 - nanos)
    } else {
        ("", secs, nanos)
    };
    let frac = format!("{frac:09}");
    format!("{sign}{whole}.{}", frac.trim_end_matches('0')).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let records = vec![
            (b"path".to_vec(), b"a/very/long/name".to_vec()),
            (b"SCHILY.xattr.user.bin".to_vec(), vec![0, b'\n', 0xff]),
        ];
        let data = encode_records(&records);
        assert!(data.starts_with(b"25 path=a/very/long/name\n"));
        assert_eq!(parse_records(&data).unwrap(), records);
    }

    #[test]
    fn record_length_spanning_digit_boundary_is_consistent() {
        // 98 bytes plus a two-digit length would be 100, which has three digits: 101 is right.
        let records = vec![(b"k".to_vec(), vec![b'v'; 94])];
        let data = encode_records(&records);
        assert_eq!(data.len(), 101);
        assert!(data.starts_with(b"101 "));
        assert_eq!(parse_records(&data).unwrap(), records);
    }

    #[test]
    fn malformed_records_are_rejected() {
        assert!(parse_records(b"5 a=b\n").is_err());
        assert!(parse_records(b"99 a=b\n").is_err());
        assert!(parse_records(b"x a=b\n").is_err());
        assert!(parse_records(b"6 ab\n").is_err());
    }

    #[test]
    fn times_parse_and_format() {
        assert_eq!(
            parse_time(b"1350244992.023960108"),
            Some((1_350_244_992, 23_960_108))
        );
        assert_eq!(parse_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_time(b"12"), Some((12, 0)));
        assert_eq!(parse_time(b"1e5"), None);
        assert_eq!(format_time(-2, 750_000_000), b"-1.25");
        assert_eq!(format_time(5, 100), b"5.0000001");
    }
}
