//! The error of a setting that cannot work. A leaf: the checks, the TLS files and the edges
//! that find such a setting all name it the same way.

/// A setting that cannot work, named as the operator set it: `SWITCHBOARD_TLS_CA_FILE: cannot
/// read /x/ca.pem: No such file or directory`. `switchboard` prints this one line and exits
/// with status 2. The problem never quotes a URL's password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct SettingError {
    /// The environment variable (`SWITCHBOARD_…`); the TOML key is its lower-case tail.
    pub setting: String,
    pub problem: String,
}

impl SettingError {
    /// `field` is the configuration field (`tls_ca_file`) or a whole variable name.
    pub fn new(field: &str, problem: impl Into<String>) -> SettingError {
        let setting = if field.starts_with("SWITCHBOARD_") {
            field.to_string()
        } else {
            format!("SWITCHBOARD_{}", field.to_uppercase())
        };
        SettingError {
            setting,
            problem: problem.into(),
        }
    }
}
