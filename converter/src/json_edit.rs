//! Editing JSON documents without disturbing the parts we do not change.
//!
//! Manifests, indexes and configs carry fields this converter does not know (vendor
//! annotations, `subject`, `artifactType`, history, …). Decoding them into typed structs and
//! encoding them again would drop or reorder those fields. Instead:
//!
//! * [`RawObject`] holds an object's members in their original order with each value's exact
//!   text, so a rebuilt manifest keeps every member it does not replace;
//! * [`splice_member`] replaces one nested value in place and keeps every other byte of the
//!   document, which is how a config's `rootfs.diff_ids` is rewritten.
//!
//! Both reject objects with a repeated key: readers disagree about which copy wins.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A JSON object with members in document order and values as their original text.
#[derive(Debug, Clone, Default)]
pub struct RawObject {
    members: Vec<(String, Box<RawValue>)>,
}

impl RawObject {
    /// Parses a JSON object.
    pub fn parse(bytes: &[u8]) -> Result<RawObject, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// Parses a JSON object from a member value of another object.
    pub fn from_raw(raw: &RawValue) -> Result<RawObject, String> {
        serde_json::from_str(raw.get()).map_err(|e| e.to_string())
    }

    /// The raw value of member `key`.
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.members
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }

    /// Decodes member `key`; `Ok(None)` when it is absent.
    pub fn get_as<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(raw) => serde_json::from_str(raw.get())
                .map(Some)
                .map_err(|e| format!("member {key:?}: {e}")),
        }
    }

    /// Replaces member `key` in place, or appends it. Returns true when the text changed.
    pub fn set_raw(&mut self, key: &str, value: Box<RawValue>) -> bool {
        match self.members.iter_mut().find(|(k, _)| k == key) {
            Some((_, old)) if old.get() == value.get() => false,
            Some((_, old)) => {
                *old = value;
                true
            }
            None => {
                self.members.push((key.to_string(), value));
                true
            }
        }
    }

    /// Encodes `value` compactly and sets it as member `key`. Returns true when the text changed.
    pub fn set<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> bool {
        self.set_raw(key, to_raw(value))
    }

    /// Removes member `key`. Returns true when it was present.
    pub fn remove(&mut self, key: &str) -> bool {
        let before = self.members.len();
        self.members.retain(|(k, _)| k != key);
        self.members.len() != before
    }

    /// Encodes the object: members in order, values as stored, no whitespace between members.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            64 + self
                .members
                .iter()
                .map(|(k, v)| k.len() + v.get().len() + 4)
                .sum::<usize>(),
        );
        out.push(b'{');
        for (i, (key, value)) in self.members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Encoding a string cannot fail.
            out.extend_from_slice(serde_json::to_string(key).unwrap_or_default().as_bytes());
            out.push(b':');
            out.extend_from_slice(value.get().as_bytes());
        }
        out.push(b'}');
        out
    }

    /// The encoded object as a raw value, for nesting in another object.
    pub fn to_raw(&self) -> Box<RawValue> {
        let text = String::from_utf8(self.to_vec()).unwrap_or_default();
        RawValue::from_string(text).unwrap_or_else(|_| to_raw(&serde_json::Value::Null))
    }
}

/// Encodes a serializable value compactly as a raw JSON value.
pub fn to_raw<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    // Serializing plain data (strings, numbers, maps with string keys) cannot fail.
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| {
        RawValue::from_string("null".to_string())
            .unwrap_or_else(|_| unreachable!("null is valid JSON"))
    })
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = RawObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawObject, A::Error> {
        let mut members: Vec<(String, Box<RawValue>)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, Box<RawValue>>()? {
            if members.iter().any(|(k, _)| *k == key) {
                return Err(serde::de::Error::custom(format!(
                    "key {key:?} appears twice"
                )));
            }
            members.push((key, value));
        }
        Ok(RawObject { members })
    }
}

impl<'de> Deserialize<'de> for RawObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// An object whose values borrow from the document, so their positions can be computed.
struct BorrowedObject<'a>(Vec<(String, &'a RawValue)>);

struct BorrowedVisitor;

impl<'de> Visitor<'de> for BorrowedVisitor {
    type Value = BorrowedObject<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BorrowedObject<'de>, A::Error> {
        let mut members: Vec<(String, &'de RawValue)> = Vec::new();
        while let Some((key, value)) = map.next_entry::<String, &'de RawValue>()? {
            if members.iter().any(|(k, _)| *k == key) {
                return Err(serde::de::Error::custom(format!(
                    "key {key:?} appears twice"
                )));
            }
            members.push((key, value));
        }
        Ok(BorrowedObject(members))
    }
}

impl<'de> Deserialize<'de> for BorrowedObject<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(BorrowedVisitor)
    }
}

/// Finds the byte range of the value at `path` (a chain of object keys) inside `doc`.
pub fn member_range(doc: &[u8], path: &[&str]) -> Result<std::ops::Range<usize>, String> {
    let text = std::str::from_utf8(doc).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut current: &str = text;
    let mut walked = Vec::new();
    for key in path {
        let object: BorrowedObject<'_> = serde_json::from_str(current).map_err(|e| {
            if walked.is_empty() {
                e.to_string()
            } else {
                format!("member {:?}: {e}", walked.join("."))
            }
        })?;
        walked.push(*key);
        let value = object
            .0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
            .ok_or_else(|| format!("member {:?} is missing", walked.join(".")))?;
        current = value.get();
    }
    // `current` is a subslice of `text`: serde_json borrows raw values from the input.
    let start = (current.as_ptr() as usize).wrapping_sub(text.as_ptr() as usize);
    let end = start
        .checked_add(current.len())
        .filter(|&end| start <= text.len() && end <= text.len());
    match end {
        Some(end) => Ok(start..end),
        None => Err("internal error: raw value does not point into the document".into()),
    }
}

/// Replaces the value at `path` with `new_value` (JSON text), keeping every other byte of `doc`.
pub fn splice_member(doc: &[u8], path: &[&str], new_value: &str) -> Result<Vec<u8>, String> {
    let range = member_range(doc, path)?;
    let mut out = Vec::with_capacity(doc.len() + new_value.len());
    out.extend_from_slice(&doc[..range.start]);
    out.extend_from_slice(new_value.as_bytes());
    out.extend_from_slice(&doc[range.end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_object_keeps_member_order_and_text() {
        let doc = br#"{"z": 1, "a": {"nested" : [1, 2]}, "m":"x"}"#;
        let mut object = RawObject::parse(doc).unwrap();
        assert!(object.set("m", "y"));
        assert!(!object.set("z", &1));
        assert!(object.set("new", &true));
        assert_eq!(
            String::from_utf8(object.to_vec()).unwrap(),
            r#"{"z":1,"a":{"nested" : [1, 2]},"m":"y","new":true}"#
        );
    }

    #[test]
    fn repeated_key_is_rejected() {
        let err = RawObject::parse(br#"{"a":1,"a":2}"#).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        assert!(splice_member(br#"{"r":{"d":1,"d":2}}"#, &["r", "d"], "3").is_err());
    }

    #[test]
    fn splice_replaces_only_the_nested_value() {
        let doc = b"{\n  \"rootfs\": {\"type\": \"layers\",\n    \"diff_ids\": [\"sha256:old\"]\n  },\n  \"zz\": 1\n}";
        let out = splice_member(doc, &["rootfs", "diff_ids"], r#"["sha256:new"]"#).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n  \"rootfs\": {\"type\": \"layers\",\n    \"diff_ids\": [\"sha256:new\"]\n  },\n  \"zz\": 1\n}"
        );
    }

    #[test]
    fn splice_reports_missing_member() {
        let err = splice_member(br#"{"rootfs":{}}"#, &["rootfs", "diff_ids"], "[]").unwrap_err();
        assert!(err.contains("rootfs.diff_ids"), "{err}");
    }

    #[test]
    fn splice_rejects_non_objects() {
        assert!(splice_member(b"[1]", &["a"], "1").is_err());
        assert!(splice_member(br#"{"rootfs":[]}"#, &["rootfs", "diff_ids"], "1").is_err());
        assert!(splice_member(b"\xff", &["a"], "1").is_err());
    }
}
