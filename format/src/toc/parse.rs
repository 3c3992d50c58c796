//! Streaming TOC parser: entries are handed to a callback one at a time, so a reader never holds
//! the parsed entry list next to its own index.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{TOC_VERSION, Toc, TocEntry};
use crate::error::TocError;
use crate::limits::Limits;

/// The `version` value found in a TOC, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TocVersion(pub Option<u64>);

/// Parses TOC JSON, calling `on_entry(index, entry)` for every entry in order.
///
/// Stops at the first error from the callback and returns it. Checks that the version, when
/// present, is 1, that the entry count stays within `limits`, and that nothing follows the JSON
/// object. Unknown keys are ignored at both levels.
pub fn parse_toc_entries<F>(
    json: &[u8],
    limits: &Limits,
    mut on_entry: F,
) -> Result<TocVersion, TocError>
where
    F: FnMut(usize, TocEntry) -> Result<(), TocError>,
{
    if json.len() as u64 > limits.max_toc_json_bytes {
        return Err(TocError::TooLarge {
            what: "TOC JSON",
            value: json.len() as u64,
            limit: limits.max_toc_json_bytes,
        });
    }
    let mut callback_error = None;
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let seed = TocSeed {
        on_entry: &mut on_entry,
        limits,
        callback_error: &mut callback_error,
    };
    let result = seed.deserialize(&mut deserializer).and_then(|version| {
        deserializer.end()?;
        Ok(version)
    });
    match (result, callback_error) {
        (_, Some(error)) => Err(error),
        (Err(error), None) => Err(TocError::Json(error)),
        (Ok(version), None) => match version {
            Some(v) if v != TOC_VERSION => Err(TocError::UnsupportedVersion(v)),
            _ => Ok(TocVersion(version)),
        },
    }
}

/// Parses TOC JSON into a [`Toc`] held in memory.
pub fn parse_toc(json: &[u8], limits: &Limits) -> Result<Toc, TocError> {
    let mut entries = Vec::new();
    let version = parse_toc_entries(json, limits, |_, entry| {
        entries.push(entry);
        Ok(())
    })?;
    Ok(Toc {
        version: version.0.unwrap_or(TOC_VERSION),
        entries,
    })
}

struct TocSeed<'a, F> {
    on_entry: &'a mut F,
    limits: &'a Limits,
    callback_error: &'a mut Option<TocError>,
}

impl<'de, F> DeserializeSeed<'de> for TocSeed<'_, F>
where
    F: FnMut(usize, TocEntry) -> Result<(), TocError>,
{
    type Value = Option<u64>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F> Visitor<'de> for TocSeed<'_, F>
where
    F: FnMut(usize, TocEntry) -> Result<(), TocError>,
{
    type Value = Option<u64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a TOC object with \"version\" and \"entries\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut version = None;
        let mut seen_entries = false;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match key.as_ref() {
                "version" => version = Some(map.next_value::<u64>()?),
                "entries" if !seen_entries => {
                    seen_entries = true;
                    map.next_value_seed(EntriesSeed {
                        on_entry: &mut *self.on_entry,
                        limits: self.limits,
                        callback_error: &mut *self.callback_error,
                    })?;
                }
                "entries" => return Err(serde::de::Error::duplicate_field("entries")),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(version)
    }
}

struct EntriesSeed<'a, F> {
    on_entry: &'a mut F,
    limits: &'a Limits,
    callback_error: &'a mut Option<TocError>,
}

impl<'de, F> DeserializeSeed<'de> for EntriesSeed<'_, F>
where
    F: FnMut(usize, TocEntry) -> Result<(), TocError>,
{
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F> Visitor<'de> for EntriesSeed<'_, F>
where
    F: FnMut(usize, TocEntry) -> Result<(), TocError>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of TOC entries")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        // `"entries": null` is an empty TOC.
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = 0usize;
        while let Some(entry) = seq.next_element::<TocEntry>()? {
            if index >= self.limits.max_entries {
                *self.callback_error = Some(TocError::TooManyEntries {
                    limit: self.limits.max_entries,
                });
                return Err(serde::de::Error::custom("too many entries"));
            }
            if let Err(error) = (self.on_entry)(index, entry) {
                *self.callback_error = Some(error);
                return Err(serde::de::Error::custom("entry rejected"));
            }
            index += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toc::EntryKind;

    #[test]
    fn entries_arrive_in_order() {
        let json = br#"{"version":1,"entries":[{"name":"a/","type":"dir"},{"name":"a/b","type":"reg","size":3}]}"#;
        let toc = parse_toc(json, &Limits::default()).unwrap();
        assert_eq!(toc.entries.len(), 2);
        assert_eq!(toc.entries[1].kind, EntryKind::Reg);
        assert_eq!(toc.entries[1].size, 3);
    }

    #[test]
    fn version_two_is_rejected() {
        let json = br#"{"version":2,"entries":[]}"#;
        assert!(matches!(
            parse_toc(json, &Limits::default()),
            Err(TocError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn entry_limit_is_enforced() {
        let json = br#"{"version":1,"entries":[{"type":"dir"},{"type":"dir"},{"type":"dir"}]}"#;
        let limits = Limits {
            max_entries: 2,
            ..Limits::default()
        };
        assert!(matches!(
            parse_toc(json, &limits),
            Err(TocError::TooManyEntries { limit: 2 })
        ));
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        let json = br#"{"version":1,"entries":[]} x"#;
        assert!(matches!(
            parse_toc(json, &Limits::default()),
            Err(TocError::Json(_))
        ));
    }

    #[test]
    fn callback_error_is_returned_unchanged() {
        let json = br#"{"version":1,"entries":[{"name":"bad","type":"reg"}]}"#;
        let err = parse_toc_entries(json, &Limits::default(), |index, entry| {
            Err(TocError::InvalidEntry {
                index,
                name: entry.name,
                reason: "test".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(err, TocError::InvalidEntry { index: 0, .. }));
    }

    #[test]
    fn entries_before_version_are_accepted() {
        let json = br#"{"entries":[{"name":"x","type":"fifo"}],"version":1}"#;
        assert_eq!(
            parse_toc(json, &Limits::default()).unwrap().entries.len(),
            1
        );
    }
}
