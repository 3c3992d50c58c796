//! Matching the config's `history` to layers. Entries marked `empty_layer` (ENV, CMD, ...)
//! made no layer and are skipped; the others map to the layers in order.

use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    history: Vec<HistoryEntry>,
}

#[derive(Deserialize)]
struct HistoryEntry {
    #[serde(default)]
    created_by: Option<String>,
    #[serde(default)]
    empty_layer: bool,
}

/// Returns `created_by` for each of `layers` layers, `None` where the history has no entry or
/// the config cannot be read as JSON with a history.
pub fn created_by(config: &[u8], layers: usize) -> Vec<Option<String>> {
    let history = serde_json::from_slice::<Config>(config)
        .map(|c| c.history)
        .unwrap_or_default();
    let mut out: Vec<Option<String>> = history
        .into_iter()
        .filter(|entry| !entry.empty_layer)
        .map(|entry| entry.created_by)
        .take(layers)
        .collect();
    if out.len() < layers {
        tracing::debug!(
            layers,
            history = out.len(),
            "the config history names fewer layers than the image has"
        );
    }
    out.resize(layers, None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_layer_entries_are_skipped() {
        let config = br#"{"history":[
            {"created_by":"ADD rootfs.tar /"},
            {"created_by":"ENV A=1","empty_layer":true},
            {"created_by":"RUN apt-get install -y curl"},
            {"created_by":"CMD [\"sh\"]","empty_layer":true}
        ]}"#;
        assert_eq!(
            created_by(config, 2),
            vec![
                Some("ADD rootfs.tar /".to_string()),
                Some("RUN apt-get install -y curl".to_string())
            ]
        );
    }

    #[test]
    fn missing_history_gives_none() {
        assert_eq!(created_by(b"{}", 2), vec![None, None]);
        assert_eq!(created_by(b"not json", 1), vec![None]);
    }
}
