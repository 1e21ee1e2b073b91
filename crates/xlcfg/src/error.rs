use thiserror::Error;

/// An error in a configuration, located by source (file name or "command line"), line and key.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{source_name}:{line}: {}{message}", key.as_ref().map(|k| format!("'{k}': ")).unwrap_or_default())]
pub struct ConfigError {
    /// The file the setting came from, or `command line` for KEY=VALUE overrides.
    pub source_name: String,
    /// 1-based line number.
    pub line: usize,
    /// The key the error is about, when there is one.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(
        source_name: &str,
        line: usize,
        key: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            source_name: source_name.to_string(),
            line,
            key: key.map(str::to_string),
            message: message.into(),
        }
    }
}
