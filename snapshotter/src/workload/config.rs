//! The parts of an OCI image config that set how a process runs: environment, working
//! directory and user (the `config` object of the OCI image-spec config.md).

use serde::Deserialize;

use super::error::WorkloadError;

/// PATH used when neither the image config nor an override sets one. It is the value container
/// runtimes such as runc's `libcontainer` and Docker use for Linux images.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Process settings from an image config. Missing fields are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRuntimeConfig {
    /// `Env`: `KEY=VALUE` entries, in order.
    pub env: Vec<String>,
    /// `WorkingDir`, when set and not empty.
    pub working_dir: Option<String>,
    /// `User` (`user`, `uid`, `user:group` or `uid:gid`), when set and not empty.
    pub user: Option<String>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ProcessConfig>,
}

#[derive(Deserialize)]
struct ProcessConfig {
    #[serde(rename = "Env", default)]
    env: Option<Vec<String>>,
    #[serde(rename = "WorkingDir", default)]
    working_dir: Option<String>,
    #[serde(rename = "User", default)]
    user: Option<String>,
}

impl ImageRuntimeConfig {
    /// Parses the config blob of an image. Unknown fields are ignored: the document comes from
    /// any image builder.
    pub fn from_config_json(bytes: &[u8]) -> Result<ImageRuntimeConfig, WorkloadError> {
        let file: ConfigFile = serde_json::from_slice(bytes).map_err(WorkloadError::Config)?;
        let Some(process) = file.config else {
            return Ok(ImageRuntimeConfig::default());
        };
        let non_empty = |value: Option<String>| value.filter(|text| !text.is_empty());
        Ok(ImageRuntimeConfig {
            env: process.env.unwrap_or_default(),
            working_dir: non_empty(process.working_dir),
            user: non_empty(process.user),
        })
    }
}

/// Builds the workload's environment: the image's `KEY=VALUE` entries, then `overrides` (which
/// replace a key in place or are appended), then `PATH` = [`DEFAULT_PATH`] if still unset.
/// Image entries without `=` are skipped; a repeated key keeps its last value.
pub fn merge_env(image_env: &[String], overrides: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: &str| match env.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_owned(),
        None => env.push((key.to_owned(), value.to_owned())),
    };
    for entry in image_env {
        if let Some((key, value)) = entry.split_once('=') {
            set(key, value);
        }
    }
    for (key, value) in overrides {
        set(key, value);
    }
    if !env.iter().any(|(key, _)| key == "PATH") {
        env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_fields_are_read() {
        let json = br#"{"architecture":"amd64","config":{"Env":["PATH=/usr/bin","LANG=C.UTF-8"],"WorkingDir":"/app","User":"1000:1000","Cmd":["sh"]},"rootfs":{}}"#;
        let config = ImageRuntimeConfig::from_config_json(json).unwrap();
        assert_eq!(config.env, vec!["PATH=/usr/bin", "LANG=C.UTF-8"]);
        assert_eq!(config.working_dir.as_deref(), Some("/app"));
        assert_eq!(config.user.as_deref(), Some("1000:1000"));
    }

    #[test]
    fn config_without_process_fields_is_empty() {
        let config = ImageRuntimeConfig::from_config_json(br#"{"rootfs":{}}"#).unwrap();
        assert_eq!(config, ImageRuntimeConfig::default());
        let config =
            ImageRuntimeConfig::from_config_json(br#"{"config":{"WorkingDir":"","User":""}}"#)
                .unwrap();
        assert_eq!(config, ImageRuntimeConfig::default());
    }

    #[test]
    fn invalid_config_is_rejected() {
        assert!(ImageRuntimeConfig::from_config_json(b"not json").is_err());
    }

    #[test]
    fn overrides_replace_image_env_in_place() {
        let image = vec![
            "PATH=/usr/bin".to_owned(),
            "LANG=C".to_owned(),
            "NOEQUALS".to_owned(),
        ];
        let env = merge_env(&image, &[("LANG".to_owned(), "C.UTF-8".to_owned())]);
        assert_eq!(
            env,
            vec![
                ("PATH".to_owned(), "/usr/bin".to_owned()),
                ("LANG".to_owned(), "C.UTF-8".to_owned()),
            ]
        );
    }

    #[test]
    fn missing_path_gets_default() {
        let env = merge_env(&[], &[("A".to_owned(), "1".to_owned())]);
        assert_eq!(env[1], ("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
}
