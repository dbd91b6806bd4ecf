//! The store's error type, the mapping from driver errors to it, and masking of credentials in what we show.

use std::fmt;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The options cannot describe a usable store (bad schema name, empty pool).
    #[error("invalid store options: {0}")]
    InvalidOptions(String),
    /// The database cannot be reached: connecting failed, the pool timed out or the store was closed.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The write contradicts stored state (duplicate id, second active token with a name).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The schema could not be brought up to date.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A stored row does not decode into a domain value.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Any other error reported by the database.
    #[error("database error: {0}")]
    Backend(String),
}

/// A store target as it may be shown: credentials masked, plus the secrets to scrub from driver messages.
#[derive(Clone)]
pub(crate) struct TargetLabel {
    shown: String,
    secrets: Vec<String>,
}

impl TargetLabel {
    /// Label for a SQLite file.
    pub(crate) fn sqlite(path: &std::path::Path) -> Self {
        Self {
            shown: format!("sqlite:{}", path.display()),
            secrets: Vec::new(),
        }
    }

    /// Label for a PostgreSQL URL and optional schema.
    pub(crate) fn postgres(url: &str, schema: Option<&str>) -> Self {
        let mut shown = mask_url(url);
        if let Some(schema) = schema {
            shown.push_str(&format!(" (schema `{schema}`)"));
        }
        Self {
            shown,
            secrets: url_secrets(url),
        }
    }

    /// Removes every known secret from a message.
    pub(crate) fn scrub(&self, message: String) -> String {
        self.secrets.iter().fold(message, |message, secret| {
            message.replace(secret.as_str(), "***")
        })
    }

    /// Connecting failed.
    pub(crate) fn cannot_connect(&self, err: &sqlx::Error) -> StoreError {
        StoreError::Unavailable(self.scrub(format!("cannot connect to {}: {err}", self.shown)))
    }

    /// Maps a driver error met during an operation.
    pub(crate) fn error(&self, err: sqlx::Error) -> StoreError {
        match err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => {
                StoreError::Unavailable(self.scrub(format!("{}: {err}", self.shown)))
            }
            other => StoreError::Backend(self.scrub(other.to_string())),
        }
    }

    /// Maps a migration failure.
    pub(crate) fn migration(&self, err: sqlx::migrate::MigrateError) -> StoreError {
        use sqlx::migrate::MigrateError;
        let message = match err {
            MigrateError::VersionMissing(version) => format!(
                "{} was migrated by a newer build: migration {version} is unknown to this one",
                self.shown
            ),
            MigrateError::VersionMismatch(version) => format!(
                "migration {version} applied to {} differs from the one in this build",
                self.shown
            ),
            MigrateError::Execute(err) if is_unavailable(&err) => {
                return self.error(err);
            }
            other => format!("{}: {other}", self.shown),
        };
        StoreError::Migration(self.scrub(message))
    }
}

fn is_unavailable(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    )
}

impl fmt::Display for TargetLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Shows only the masked form.
impl fmt::Debug for TargetLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.shown, f)
    }
}

/// Query parameters of a PostgreSQL URL whose values are secret.
const SECRET_PARAMS: [&str; 2] = ["password", "sslpassword"];

/// Masks the password of a connection URL (`user:***@host`) and the values of password query parameters.
pub(crate) fn mask_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    let head_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (head, tail) = rest.split_at(head_end);
    let head = match head.rfind('@') {
        Some(at) => {
            let (userinfo, host) = head.split_at(at);
            match userinfo.split_once(':') {
                Some((user, _password)) => format!("{user}:***{host}"),
                None => head.to_owned(),
            }
        }
        None => head.to_owned(),
    };
    let tail = match tail.strip_prefix('?') {
        Some(query) => {
            let (query, fragment) = query.split_at(query.find('#').unwrap_or(query.len()));
            let masked: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if is_secret_param(key) => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("?{}{fragment}", masked.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}{head}{tail}")
}

fn is_secret_param(key: &str) -> bool {
    SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(key))
}

/// The secret values in a URL, raw and percent-decoded; short ones are left out (scrubbing them would mangle text
/// without protecting anything).
fn url_secrets(url: &str) -> Vec<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let head_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (head, tail) = rest.split_at(head_end);
    let mut raw = Vec::new();
    if let Some((userinfo, _)) = head.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        raw.push(password);
    }
    if let Some(query) = tail.strip_prefix('?') {
        let query = query.split('#').next().unwrap_or(query);
        raw.extend(
            query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .filter(|(key, _)| is_secret_param(key))
                .map(|(_, value)| value),
        );
    }
    let mut secrets: Vec<String> = raw
        .into_iter()
        .flat_map(|s| [s.to_owned(), percent_decode(s)])
        .filter(|s| s.len() >= 4)
        .collect();
    // Longest first, so a secret containing another is scrubbed whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked() {
        let cases = [
            (
                "postgres://aura:s3cret@db:5432/aura",
                "postgres://aura:***@db:5432/aura",
            ),
            (
                "postgres://postgres@127.0.0.1:5432/test",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
            ("postgres://db/aura", "postgres://db/aura"),
            (
                "postgresql://u:p%40ss@h/d?sslmode=require&password=other#frag",
                "postgresql://u:***@h/d?sslmode=require&password=***#frag",
            ),
            (
                "postgres://u:pa/ss@word@h/d?PassWord=x",
                "postgres://u:***@h/d?PassWord=***",
            ),
            (
                "postgres://h/d?sslpassword=k&application_name=a",
                "postgres://h/d?sslpassword=***&application_name=a",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(mask_url(url), expected, "{url}");
        }
    }

    #[test]
    fn target_labels_never_show_the_password() {
        let label = TargetLabel::postgres("postgres://aura:hunter2%21@db/aura", Some("tenant_a"));
        let shown = label.to_string();
        assert_eq!(shown, "postgres://aura:***@db/aura (schema `tenant_a`)");
        assert_eq!(format!("{label:?}"), format!("{shown:?}"));
        let scrubbed = label.scrub("auth failed for hunter2! and hunter2%21".to_owned());
        assert_eq!(scrubbed, "auth failed for *** and ***");
        let err = label.cannot_connect(&sqlx::Error::Protocol("server said hunter2!".to_owned()));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn display_and_debug_of_a_target_mask_the_password() {
        let target = crate::StoreTarget::Postgres {
            url: "postgres://aura:topsecret@db/aura".to_owned(),
            schema: None,
        };
        assert_eq!(target.to_string(), "postgres://aura:***@db/aura");
        let options = crate::ConnectOptions {
            target,
            max_connections: 1,
            connect_timeout: std::time::Duration::from_secs(1),
        };
        assert!(!format!("{options:?}").contains("topsecret"));
    }
}
