//! The streaming token: where it comes from and where it is kept.
//!
//! In this order: `Quix__Sdk__Token` in the environment (scripts, rotation); a systemd credential
//! `quix-streaming-token` (`LoadCredential=` in the service unit: the file in
//! `$CREDENTIALS_DIRECTORY`); the OS credential store through `keyring` (Secret Service on Linux —
//! never the kernel keyring, which forgets at reboot — Keychain on macOS, Credential Manager on
//! Windows).
//! The token is a [`Secret`]: never logged, printed or written to a file by HostPulse.

use hostpulse_core::secret::{Secret, TokenError};
use serde::Serialize;
use thiserror::Error;

/// The environment variable both Quix SDKs read the token from.
pub const TOKEN_ENV: &str = "Quix__Sdk__Token";

/// The systemd credential holding the token (`LoadCredential=quix-streaming-token:…`).
pub const TOKEN_CREDENTIAL: &str = "quix-streaming-token";

/// Where systemd puts a service's credentials.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";

/// The systemd credential `name` of this process, if systemd passed one: `Ok(None)` when there
/// is no credentials directory or no such credential; an error naming the file when it exists
/// but cannot be read. Surrounding white space is trimmed.
pub fn systemd_credential(name: &str) -> Result<Option<Secret>, SecretStoreError> {
    credential_in(std::env::var_os(CREDENTIALS_DIRECTORY_ENV).map(std::path::PathBuf::from), name)
}

fn credential_in(dir: Option<std::path::PathBuf>, name: &str) -> Result<Option<Secret>, SecretStoreError> {
    let Some(path) = dir.map(|d| d.join(name)) else { return Ok(None) };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Secret::new(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SecretStoreError::Failed {
            detail: format!("cannot read the systemd credential {}: {e}", path.display()),
        }),
    }
}

/// Where the token in use came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// `Quix__Sdk__Token`.
    Environment,
    /// The systemd credential `quix-streaming-token`.
    SystemdCredential,
    /// The OS credential store.
    CredentialStore,
}

impl std::fmt::Display for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TokenSource::Environment => "the environment variable Quix__Sdk__Token",
            TokenSource::SystemdCredential => "the systemd credential quix-streaming-token",
            TokenSource::CredentialStore => "the OS credential store",
        })
    }
}

/// Why the credential store could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SecretStoreError {
    /// No credential store answers (no D-Bus session, no Secret Service).
    #[error(
        "no OS credential store is available ({detail}): install and start a Secret Service such as gnome-keyring or KWallet (Linux), set the token in the environment variable Quix__Sdk__Token, or (a systemd service) pass it as the credential quix-streaming-token"
    )]
    Unavailable {
        /// The platform's message.
        detail: String,
    },
    /// The store exists but is locked.
    #[error(
        "the OS credential store is locked ({detail}): unlock it (log in to the desktop session or unlock the login keyring), or set Quix__Sdk__Token"
    )]
    Locked {
        /// The platform's message.
        detail: String,
    },
    /// Anything else the store reported.
    #[error("the OS credential store failed: {detail}")]
    Failed {
        /// The platform's message.
        detail: String,
    },
    /// The token found is not one token (spaces, control characters): never sent anywhere.
    #[error("the streaming token in {token_source} is not usable: {error}")]
    Malformed {
        /// Where it was found.
        token_source: TokenSource,
        /// What is wrong with it (never the token itself).
        error: TokenError,
    },
}

/// A place to keep the token.
pub trait SecretStore: Send + Sync + 'static {
    /// The stored token; `Ok(None)` when there is none.
    fn get(&self) -> Result<Option<Secret>, SecretStoreError>;
    /// Stores (or replaces) the token.
    fn set(&self, token: &Secret) -> Result<(), SecretStoreError>;
    /// Removes the token; `true` if there was one.
    fn clear(&self) -> Result<bool, SecretStoreError>;
    /// Where it keeps tokens, for people ("the OS credential store (Secret Service)").
    fn describe(&self) -> String;
}

/// The OS credential store, through `keyring` 3.
pub struct KeyringStore {
    service: String,
    user: String,
}

impl KeyringStore {
    /// HostPulse's entry: service `hostpulse`, account `quix-streaming-token`.
    pub fn new() -> Self {
        Self::named("hostpulse", "quix-streaming-token")
    }

    /// An entry with other names (tests use their own so they never touch a user's token).
    pub fn named(service: &str, user: &str) -> Self {
        KeyringStore { service: service.into(), user: user.into() }
    }

    fn entry(&self) -> Result<keyring::Entry, SecretStoreError> {
        keyring::Entry::new(&self.service, &self.user).map_err(map_error)
    }
}

impl Default for KeyringStore {
    fn default() -> Self {
        Self::new()
    }
}

fn map_error(e: keyring::Error) -> SecretStoreError {
    match e {
        keyring::Error::PlatformFailure(inner) => SecretStoreError::Unavailable { detail: inner.to_string() },
        keyring::Error::NoStorageAccess(inner) => SecretStoreError::Locked { detail: inner.to_string() },
        other => SecretStoreError::Failed { detail: other.to_string() },
    }
}

impl SecretStore for KeyringStore {
    fn get(&self) -> Result<Option<Secret>, SecretStoreError> {
        match self.entry()?.get_password() {
            Ok(p) => Ok(Secret::new(p)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_error(e)),
        }
    }

    fn set(&self, token: &Secret) -> Result<(), SecretStoreError> {
        self.entry()?.set_password(token.expose()).map_err(map_error)
    }

    fn clear(&self) -> Result<bool, SecretStoreError> {
        match self.entry()?.delete_credential() {
            Ok(()) => Ok(true),
            Err(keyring::Error::NoEntry) => Ok(false),
            Err(e) => Err(map_error(e)),
        }
    }

    fn describe(&self) -> String {
        let kind = if cfg!(target_os = "macos") {
            "macOS Keychain"
        } else if cfg!(windows) {
            "Windows Credential Manager"
        } else {
            "Secret Service"
        };
        format!("the OS credential store ({kind}), entry `{}`/`{}`", self.service, self.user)
    }
}

/// The token to use: the environment first, then a systemd credential, then the store.
/// `Ok(None)`: there is none. A token that is not one line without spaces ([`Secret::token`]) is
/// an error naming where it is. The store is asked only when the others have none.
pub fn resolve(store: &dyn SecretStore) -> Result<Option<(Secret, TokenSource)>, SecretStoreError> {
    let systemd = systemd_credential(TOKEN_CREDENTIAL)?;
    resolve_from(std::env::var(TOKEN_ENV).ok(), systemd, store)
}

/// [`resolve`] with the environment variable's value and the systemd credential passed in.
fn resolve_from(
    env: Option<String>,
    systemd: Option<Secret>,
    store: &dyn SecretStore,
) -> Result<Option<(Secret, TokenSource)>, SecretStoreError> {
    let checked = |text: &str, token_source| match Secret::token(text) {
        Ok(t) => Ok(Some((t, token_source))),
        Err(TokenError::Empty) => Ok(None),
        Err(error) => Err(SecretStoreError::Malformed { token_source, error }),
    };
    if let Some(text) = env
        && let Some(found) = checked(&text, TokenSource::Environment)?
    {
        return Ok(Some(found));
    }
    if let Some(t) = systemd
        && let Some(found) = checked(t.expose(), TokenSource::SystemdCredential)?
    {
        return Ok(Some(found));
    }
    match store.get()? {
        Some(t) => checked(t.expose(), TokenSource::CredentialStore),
        None => Ok(None),
    }
}

/// [`resolve`] off the async runtime's worker threads: a credential store may block (a locked
/// keyring asking for its password), and the agent must not stall meanwhile.
pub async fn resolve_blocking(
    store: std::sync::Arc<dyn SecretStore>,
) -> Result<Option<(Secret, TokenSource)>, SecretStoreError> {
    tokio::task::spawn_blocking(move || resolve(store.as_ref())).await.unwrap_or_else(|e| {
        Err(SecretStoreError::Failed { detail: format!("the credential store lookup failed: {e}") })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_say_what_to_do_and_sources_read_well() {
        let e = map_error(keyring::Error::PlatformFailure("Unable to autolaunch a dbus-daemon".into()));
        let text = e.to_string();
        assert!(text.starts_with("no OS credential store is available (Unable to autolaunch"), "{text}");
        assert!(text.contains("Quix__Sdk__Token"));
        let e = map_error(keyring::Error::NoStorageAccess("locked".into()));
        assert!(e.to_string().starts_with("the OS credential store is locked"));
        assert_eq!(TokenSource::CredentialStore.to_string(), "the OS credential store");
    }

    /// A store holding one fixed text.
    struct Fixed(&'static str);

    impl SecretStore for Fixed {
        fn get(&self) -> Result<Option<Secret>, SecretStoreError> {
            Ok(Secret::new(self.0))
        }
        fn set(&self, _: &Secret) -> Result<(), SecretStoreError> {
            Ok(())
        }
        fn clear(&self) -> Result<bool, SecretStoreError> {
            Ok(false)
        }
        fn describe(&self) -> String {
            "a fixed text".into()
        }
    }

    #[test]
    fn a_stored_token_with_inner_spaces_is_refused_naming_where_it_is_not_what_it_is() {
        let e = resolve_from(None, None, &Fixed("sdk-secret part2")).unwrap_err();
        assert!(matches!(e, SecretStoreError::Malformed { token_source: TokenSource::CredentialStore, .. }));
        let text = e.to_string();
        assert!(text.starts_with("the streaming token in the OS credential store is not usable"), "{text}");
        assert!(!text.contains("sdk-secret"), "{text}");
        let (ok, source) = resolve_from(None, None, &Fixed(" sdk-ok\n")).unwrap().unwrap();
        assert_eq!((ok.expose(), source), ("sdk-ok", TokenSource::CredentialStore));
        // The environment goes first, with the same check; blank means "not set".
        let e = resolve_from(Some("sdk-env\tx".into()), None, &Fixed("sdk-ok")).unwrap_err().to_string();
        assert!(e.starts_with("the streaming token in the environment variable Quix__Sdk__Token is not usable"), "{e}");
        let (env, source) = resolve_from(Some("sdk-env".into()), None, &Fixed("sdk-ok")).unwrap().unwrap();
        assert_eq!((env.expose(), source), ("sdk-env", TokenSource::Environment));
        let (_, source) = resolve_from(Some("  ".into()), None, &Fixed("sdk-ok")).unwrap().unwrap();
        assert_eq!(source, TokenSource::CredentialStore);
    }

    /// A store that must not be asked.
    struct Untouchable;

    impl SecretStore for Untouchable {
        fn get(&self) -> Result<Option<Secret>, SecretStoreError> {
            panic!("the credential store was asked although a systemd credential was there")
        }
        fn set(&self, _: &Secret) -> Result<(), SecretStoreError> {
            unreachable!()
        }
        fn clear(&self) -> Result<bool, SecretStoreError> {
            unreachable!()
        }
        fn describe(&self) -> String {
            "nothing".into()
        }
    }

    #[test]
    fn a_systemd_credential_comes_after_the_environment_and_before_the_store() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(TOKEN_CREDENTIAL), "sdk-from-systemd\n").unwrap();
        let systemd = credential_in(Some(dir.path().into()), TOKEN_CREDENTIAL).unwrap();
        let (t, source) = resolve_from(None, systemd.clone(), &Untouchable).unwrap().unwrap();
        assert_eq!((t.expose(), source), ("sdk-from-systemd", TokenSource::SystemdCredential));
        let (t, source) = resolve_from(Some("sdk-env".into()), systemd, &Untouchable).unwrap().unwrap();
        assert_eq!((t.expose(), source), ("sdk-env", TokenSource::Environment));
        assert_eq!(credential_in(Some(dir.path().into()), "other").unwrap(), None, "no such credential");
        assert_eq!(credential_in(None, TOKEN_CREDENTIAL).unwrap(), None, "not under systemd");
        std::fs::write(dir.path().join("bad"), "two words").unwrap();
        let bad = credential_in(Some(dir.path().into()), "bad").unwrap();
        let e = resolve_from(None, bad, &Untouchable).unwrap_err().to_string();
        assert!(
            e.starts_with("the streaming token in the systemd credential quix-streaming-token is not usable"),
            "{e}"
        );
        assert_eq!(TokenSource::SystemdCredential.to_string(), "the systemd credential quix-streaming-token");
    }
}
