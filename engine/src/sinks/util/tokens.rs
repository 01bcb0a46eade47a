//! ThingsBoard access tokens: one per device, read from a secrets file or the environment,
//! never from the command line, and never printed.
//!
//! A [`Token`] has no `Display` and its `Debug` is `Token(***)`, so neither a log line nor
//! an error message can carry it by accident; the one way to the secret is
//! [`Token::expose`], called where a request is built.
//!
//! Where tokens come from, later sources winning:
//! 1. the secrets file: the sink's `tokens-file`, else `FLOWCAST_TB_TOKENS_FILE`. One
//!    `device = token` per line; `#` starts a comment; either side may be quoted, so a
//!    TOML table of strings (`"pi-01" = "A1b2..."`) is a valid file too;
//! 2. `FLOWCAST_TB_TOKEN_<DEVICE>`: the device id upper-cased, every character other than
//!    `A-Z0-9` turned into `_` (`pi-01` → `FLOWCAST_TB_TOKEN_PI_01`);
//! 3. `FLOWCAST_TB_TOKEN`: the token of every device without one of its own (a single
//!    ThingsBoard device for all readings, as the reference pipeline has it).

/// A tokens file or variable that cannot be used: the user's to fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TokenError(pub String);

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Environment variable naming the secrets file when the spec does not.
pub const TOKENS_FILE_ENV: &str = "FLOWCAST_TB_TOKENS_FILE";
/// Prefix of per-device token variables.
pub const TOKEN_ENV_PREFIX: &str = "FLOWCAST_TB_TOKEN_";
/// The fallback token of every device.
pub const DEFAULT_TOKEN_ENV: &str = "FLOWCAST_TB_TOKEN";

/// A device access token.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    /// A token; refuses an empty one or one with whitespace or control characters (a
    /// truncated or mis-pasted secret), without saying what it was.
    pub fn new(s: &str) -> Result<Token, &'static str> {
        if s.is_empty() {
            return Err("is empty");
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("contains whitespace or control characters");
        }
        Ok(Token(s.to_owned()))
    }

    /// The secret itself: for building a request, never for a message.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The token as a URL path segment (percent-encoded outside RFC 3986's unreserved set).
    pub fn path_segment(&self) -> String {
        let mut out = String::with_capacity(self.0.len());
        for b in self.0.bytes() {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// `text` with every occurrence of this token (plain or percent-encoded) replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        let text = text.replace(&self.0, "***");
        let seg = self.path_segment();
        if seg != self.0 {
            text.replace(&seg, "***")
        } else {
            text
        }
    }
}

/// Tokens by device id.
#[derive(Debug, Clone, Default)]
pub struct TokenStore {
    by_device: HashMap<String, Token>,
    /// From `FLOWCAST_TB_TOKEN_<NAME>`, by normalised name ([`env_name`]).
    by_env_name: HashMap<String, Option<Token>>,
    default: Option<Token>,
}

impl TokenStore {
    /// Loads the tokens: the file (`file`, else `FLOWCAST_TB_TOKENS_FILE`, else none), then
    /// the environment.
    pub fn load(file: Option<&Path>) -> Result<TokenStore, TokenError> {
        let env_file = std::env::var_os(TOKENS_FILE_ENV).map(PathBuf::from);
        let file = file.map(Path::to_owned).or(env_file);
        let mut store = match &file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    TokenError(format!("cannot read tokens file {}: {e}", path.display()))
                })?;
                warn_if_readable_by_others(path);
                TokenStore::parse(&text)
                    .map_err(|e| TokenError(format!("tokens file {}: {e}", path.display())))?
            }
            None => TokenStore::default(),
        };
        store.merge_env(std::env::vars())?;
        Ok(store)
    }

    /// Parses `device = token` lines. Errors name the line, never its token.
    pub fn parse(text: &str) -> Result<TokenStore, String> {
        let mut by_device = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('[') {
                continue;
            }
            let Some((device, token)) = line.split_once('=') else {
                return Err(format!("line {}: expected `device = token`", i + 1));
            };
            let device = unquote(device.trim());
            if device.is_empty() {
                return Err(format!("line {}: empty device id", i + 1));
            }
            let token = Token::new(unquote(token.trim()))
                .map_err(|why| format!("line {}: the token of {device} {why}", i + 1))?;
            by_device.insert(device.to_owned(), token);
        }
        Ok(TokenStore {
            by_device,
            ..TokenStore::default()
        })
    }

    /// Adds tokens from environment variables (`FLOWCAST_TB_TOKEN_<DEVICE>`,
    /// `FLOWCAST_TB_TOKEN`), which win over the file.
    pub fn merge_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), TokenError> {
        for (k, v) in vars {
            let slot = if k == DEFAULT_TOKEN_ENV {
                &mut self.default
            } else if let Some(name) = k.strip_prefix(TOKEN_ENV_PREFIX) {
                self.by_env_name.entry(name.to_owned()).or_default()
            } else {
                continue;
            };
            *slot = Some(Token::new(&v).map_err(|why| TokenError(format!("{k} {why}")))?);
        }
        Ok(())
    }

    /// Adds or replaces one device's token.
    pub fn insert(&mut self, device: &str, token: Token) {
        self.by_device.insert(device.to_owned(), token);
    }

    /// The token of `device`, if any.
    pub fn get(&self, device: &str) -> Option<&Token> {
        self.by_env_name
            .get(&env_name(device))
            .and_then(Option::as_ref)
            .or_else(|| self.by_device.get(device))
            .or(self.default.as_ref())
    }

    /// Every token held (for redaction and for tests that grep logs).
    pub fn all(&self) -> impl Iterator<Item = &Token> {
        self.by_device
            .values()
            .chain(self.by_env_name.values().flatten())
            .chain(self.default.iter())
    }

    /// `text` with every token held replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        self.all().fold(text.to_owned(), |t, tok| tok.redact(&t))
    }
}

/// The environment-variable form of a device id: `pi-01` → `PI_01`.
pub fn env_name(device: &str) -> String {
    device
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| s.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(s)
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(
            file = %path.display(),
            "the ThingsBoard tokens file is readable by every user: chmod 600 it"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_toml_tables() {
        let s = TokenStore::parse(
            "# devices\n[tokens]\npi-01 = abc123\n\"pi 02\" = \"q%/x\"\n\n'pi-03'='z'\n",
        )
        .expect("parses");
        assert_eq!(s.get("pi-01").map(Token::expose), Some("abc123"));
        assert_eq!(s.get("pi 02").map(Token::expose), Some("q%/x"));
        assert_eq!(s.get("pi-03").map(Token::expose), Some("z"));
        assert!(s.get("pi-04").is_none());
    }

    #[test]
    fn errors_name_the_line_but_not_the_secret() {
        let err = TokenStore::parse("a = ok\nb = sec ret\n").expect_err("whitespace");
        assert!(err.contains("line 2"), "{err}");
        assert!(!err.contains("sec"), "{err}");
        let err = TokenStore::parse("no-equals-sign-secret\n").expect_err("no =");
        assert!(!err.contains("secret"), "{err}");
    }

    #[test]
    fn environment_wins_and_default_applies_to_the_rest() {
        let mut s = TokenStore::parse("pi-01 = file-token\n").expect("parses");
        s.merge_env([
            ("FLOWCAST_TB_TOKEN_PI_01".to_owned(), "env-token".to_owned()),
            ("FLOWCAST_TB_TOKEN_PI_09".to_owned(), "nine".to_owned()),
            ("FLOWCAST_TB_TOKEN".to_owned(), "fallback".to_owned()),
            ("UNRELATED".to_owned(), "x".to_owned()),
        ])
        .expect("valid");
        assert_eq!(s.get("pi-01").map(Token::expose), Some("env-token"));
        assert_eq!(s.get("pi.09").map(Token::expose), Some("nine"));
        assert_eq!(s.get("other").map(Token::expose), Some("fallback"));
    }

    #[test]
    fn debug_and_redaction_hide_the_token() {
        let t = Token::new("s3cr/t").expect("token");
        assert_eq!(format!("{t:?}"), "Token(***)");
        assert_eq!(t.path_segment(), "s3cr%2Ft");
        assert_eq!(
            t.redact("http://h/api/v1/s3cr%2Ft/telemetry and s3cr/t"),
            "http://h/api/v1/***/telemetry and ***"
        );
        let s = TokenStore::parse("a = s3cr/t").expect("parses");
        assert!(!format!("{s:?}").contains("s3cr"));
    }
}
