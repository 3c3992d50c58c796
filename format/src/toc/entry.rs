//! One TOC entry and its field encodings.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Timestamp;
use crate::digest::Digest;

/// The type of a TOC entry, from its `type` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file; for a chunked file, also its first chunk.
    #[default]
    Reg,
    /// A symbolic link; `linkName` is the target.
    Symlink,
    /// A hard link; `linkName` is the path of the entry it links to.
    Hardlink,
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
    /// A later chunk of the preceding regular file.
    Chunk,
}

impl EntryKind {
    /// The JSON spelling of this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Dir => "dir",
            EntryKind::Reg => "reg",
            EntryKind::Symlink => "symlink",
            EntryKind::Hardlink => "hardlink",
            EntryKind::Char => "char",
            EntryKind::Block => "block",
            EntryKind::Fifo => "fifo",
            EntryKind::Chunk => "chunk",
        }
    }
}

/// Extended attributes of an entry: name to raw value. Values are base64 in JSON.
pub type Xattrs = BTreeMap<String, Vec<u8>>;

/// One entry of the TOC.
///
/// Field names follow the JSON keys of the eStargz TOC; zero values are omitted when serialized and
/// a missing key deserializes as zero. `null` is accepted wherever a value is optional.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TocEntry {
    /// Path inside the layer, as stored in the tar header (for example `./usr/bin/` or `etc/x`).
    /// When the tar name is not valid UTF-8 this holds a lossy rendering and
    /// [`TocEntry::name_bytes`] holds the exact bytes.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Entry type.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Size of a regular file in bytes (also on the first entry of a chunked file).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub size: u64,
    /// Modification time; `None` stands for the Unix epoch.
    #[serde(
        rename = "modtime",
        default,
        deserialize_with = "deserialize_modtime",
        serialize_with = "serialize_modtime",
        skip_serializing_if = "Option::is_none"
    )]
    pub mod_time: Option<Timestamp>,
    /// Symlink target or hardlink target path.
    #[serde(
        rename = "linkName",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub link_name: String,
    /// The tar header mode, possibly including file-type bits. Readers use only the permission,
    /// setuid, setgid and sticky bits.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub mode: i64,
    /// Owner user id.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub uid: u32,
    /// Owner group id.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub gid: u32,
    /// Owner user name; writers omit it when it repeats the previous name for the same uid.
    #[serde(
        rename = "userName",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub user_name: String,
    /// Owner group name; omitted like `userName`.
    #[serde(
        rename = "groupName",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub group_name: String,
    /// Compressed blob offset of the gzip member or zstd frame holding this entry's payload.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub offset: u64,
    /// Uncompressed bytes to skip after decompressing from `offset` (min-chunk-size blobs).
    #[serde(
        rename = "innerOffset",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub inner_offset: u64,
    /// Device major number.
    #[serde(
        rename = "devMajor",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub dev_major: u32,
    /// Device minor number.
    #[serde(
        rename = "devMinor",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub dev_minor: u32,
    /// Extended attributes.
    #[serde(
        default,
        deserialize_with = "deserialize_xattrs",
        serialize_with = "serialize_xattrs",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub xattrs: Xattrs,
    /// Digest of the whole content of a regular file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    /// Offset of this chunk inside the file (uncompressed).
    #[serde(
        rename = "chunkOffset",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub chunk_offset: u64,
    /// Uncompressed length of this chunk; zero means "up to the end of the file".
    #[serde(
        rename = "chunkSize",
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "is_zero"
    )]
    pub chunk_size: u64,
    /// Digest of this chunk's uncompressed bytes.
    #[serde(
        rename = "chunkDigest",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub chunk_digest: Option<Digest>,
    /// Exact name bytes when the tar name is not valid UTF-8 (a lazypull extension; other readers
    /// ignore unknown keys and see the lossy `name`).
    #[serde(
        rename = "x-lazypull-nameBytes",
        default,
        deserialize_with = "deserialize_opt_base64",
        serialize_with = "serialize_opt_base64",
        skip_serializing_if = "Option::is_none"
    )]
    pub name_bytes: Option<Vec<u8>>,
    /// Exact link target bytes when the tar link name is not valid UTF-8 (lazypull extension).
    #[serde(
        rename = "x-lazypull-linkNameBytes",
        default,
        deserialize_with = "deserialize_opt_base64",
        serialize_with = "serialize_opt_base64",
        skip_serializing_if = "Option::is_none"
    )]
    pub link_name_bytes: Option<Vec<u8>>,
}

impl TocEntry {
    /// The exact name bytes: [`TocEntry::name_bytes`] when present, else `name`.
    pub fn raw_name(&self) -> Cow<'_, [u8]> {
        match &self.name_bytes {
            Some(bytes) => Cow::Borrowed(bytes),
            None => Cow::Borrowed(self.name.as_bytes()),
        }
    }

    /// The exact link target bytes: [`TocEntry::link_name_bytes`] when present, else `linkName`.
    pub fn raw_link_name(&self) -> Cow<'_, [u8]> {
        match &self.link_name_bytes {
            Some(bytes) => Cow::Borrowed(bytes),
            None => Cow::Borrowed(self.link_name.as_bytes()),
        }
    }

    /// Sets `name` from raw bytes, keeping the exact bytes aside when they are not UTF-8.
    pub fn set_raw_name(&mut self, bytes: &[u8]) {
        let (text, exact) = split_utf8(bytes);
        self.name = text;
        self.name_bytes = exact;
    }

    /// Sets `linkName` from raw bytes, keeping the exact bytes aside when they are not UTF-8.
    pub fn set_raw_link_name(&mut self, bytes: &[u8]) {
        let (text, exact) = split_utf8(bytes);
        self.link_name = text;
        self.link_name_bytes = exact;
    }
}

fn split_utf8(bytes: &[u8]) -> (String, Option<Vec<u8>>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (text.to_string(), None),
        Err(_) => (
            String::from_utf8_lossy(bytes).into_owned(),
            Some(bytes.to_vec()),
        ),
    }
}

fn is_zero<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn deserialize_modtime<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Timestamp>, D::Error> {
    // Like the reference reader, an unparsable time is treated as the zero time, not an error.
    let text = Option::<Cow<'de, str>>::deserialize(deserializer)?;
    Ok(text
        .and_then(|t| Timestamp::parse_rfc3339(&t))
        .filter(|t| !t.is_epoch()))
}

fn serialize_modtime<S: Serializer>(
    value: &Option<Timestamp>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value.and_then(|t| t.to_rfc3339()) {
        Some(text) => serializer.serialize_str(&text),
        None => Err(serde::ser::Error::custom(
            "modification time outside years 0000-9999",
        )),
    }
}

fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let standard = base64::engine::general_purpose::STANDARD;
    standard
        .decode(text)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
}

fn deserialize_xattrs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Xattrs, D::Error> {
    let raw = Option::<BTreeMap<String, Option<String>>>::deserialize(deserializer)?;
    let mut out = Xattrs::new();
    for (name, value) in raw.unwrap_or_default() {
        let bytes = decode_base64(value.as_deref().unwrap_or(""))
            .map_err(|e| serde::de::Error::custom(format!("xattr {name:?} is not base64: {e}")))?;
        out.insert(name, bytes);
    }
    Ok(out)
}

fn serialize_xattrs<S: Serializer>(value: &Xattrs, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let standard = base64::engine::general_purpose::STANDARD;
    let mut map = serializer.serialize_map(Some(value.len()))?;
    for (name, bytes) in value {
        map.serialize_entry(name, &standard.encode(bytes))?;
    }
    map.end()
}

fn deserialize_opt_base64<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<u8>>, D::Error> {
    match Option::<Cow<'de, str>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) => decode_base64(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn serialize_opt_base64<S: Serializer>(
    value: &Option<Vec<u8>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(bytes) => {
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_fields_are_omitted() {
        let entry = TocEntry {
            name: "a/".into(),
            kind: EntryKind::Dir,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&entry).unwrap(),
            r#"{"name":"a/","type":"dir"}"#
        );
    }

    #[test]
    fn xattr_values_are_base64() {
        let mut entry = TocEntry {
            name: "f".into(),
            ..Default::default()
        };
        entry.xattrs.insert("user.bin".into(), vec![0, 1, 2, 255]);
        let json = serde_json::to_string(&entry).unwrap();
        assert!(
            json.contains(r#""xattrs":{"user.bin":"AAEC/w=="}"#),
            "{json}"
        );
        let back: TocEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(back.xattrs["user.bin"], vec![0, 1, 2, 255]);
    }

    #[test]
    fn nulls_and_unknown_keys_are_accepted() {
        let json =
            r#"{"name":"x","type":"reg","size":null,"NumLink":0,"modtime":"garbage","uid":null}"#;
        let entry: TocEntry = serde_json::from_str(json).unwrap();
        assert_eq!(entry.size, 0);
        assert_eq!(entry.mod_time, None);
    }

    #[test]
    fn unknown_type_is_rejected() {
        let json = r#"{"name":"x","type":"socket"}"#;
        assert!(serde_json::from_str::<TocEntry>(json).is_err());
    }

    #[test]
    fn non_utf8_names_keep_exact_bytes() {
        let mut entry = TocEntry::default();
        entry.set_raw_name(b"caf\xe9");
        assert_eq!(entry.name, "caf\u{fffd}");
        let json = serde_json::to_string(&entry).unwrap();
        let back: TocEntry = serde_json::from_str(&json).unwrap();
        assert_eq!(&*back.raw_name(), b"caf\xe9");
    }
}
