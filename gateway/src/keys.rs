//! The server's RSA key pair in MPUSH's format: base64 PKCS#8 private key, base64 X.509
//! public key (`mp.security.private-key` / `mp.security.public-key`).

use std::path::Path;

use mpush_protocol::{RsaPrivateKey, RsaPublicKey};
use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};

use crate::config::SecurityConfig;
use crate::GatewayError;

/// MPUSH's key size.
pub const KEY_BITS: usize = 1024;

/// The key pair the gateway serves with.
#[derive(Clone, Debug)]
pub struct KeyPair {
    /// The private key.
    pub private_key: RsaPrivateKey,
    /// The public key as base64 X.509, what clients are configured with.
    pub public_key_base64: String,
}

/// The dev-mode key file (TOML).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct KeyFile {
    private_key: String,
    public_key: String,
}

impl KeyPair {
    /// A fresh 1024-bit key pair from the OS CSPRNG.
    pub fn generate() -> Result<KeyPair, GatewayError> {
        let private_key =
            RsaPrivateKey::generate(&mut OsRng, KEY_BITS).map_err(|e| GatewayError::Key(e.to_string()))?;
        Ok(KeyPair::from_private(private_key))
    }

    /// The pair around a private key.
    pub fn from_private(private_key: RsaPrivateKey) -> KeyPair {
        let public_key_base64 = private_key.public_key().to_base64();
        KeyPair { private_key, public_key_base64 }
    }

    /// Parses MPUSH's base64 keys; a given public key must match the private one.
    pub fn from_base64(private_key: &str, public_key: Option<&str>) -> Result<KeyPair, GatewayError> {
        let private_key = RsaPrivateKey::from_base64(private_key.trim())
            .map_err(|e| GatewayError::Key(format!("private-key: {e}")))?;
        let pair = KeyPair::from_private(private_key);
        if let Some(p) = public_key.map(str::trim).filter(|p| !p.is_empty()) {
            let given = RsaPublicKey::from_base64(p).map_err(|e| GatewayError::Key(format!("public-key: {e}")))?;
            if given != pair.private_key.public_key() {
                return Err(GatewayError::Key("public-key does not match private-key".into()));
            }
        }
        Ok(pair)
    }

    /// Loads the dev key file, or generates a pair and writes it there (owner-only
    /// permissions on Unix). Returns whether the pair was generated.
    pub fn load_or_generate(path: &Path) -> Result<(KeyPair, bool), GatewayError> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let f: KeyFile = toml::from_str(&text)
                    .map_err(|e| GatewayError::Key(format!("key file {}: {e}", path.display())))?;
                Ok((KeyPair::from_base64(&f.private_key, Some(&f.public_key))?, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let pair = KeyPair::generate()?;
                let f =
                    KeyFile { private_key: pair.private_key.to_base64(), public_key: pair.public_key_base64.clone() };
                let text = toml::to_string(&f).map_err(|e| GatewayError::Key(e.to_string()))?;
                write_private(path, &text)
                    .map_err(|e| GatewayError::Key(format!("cannot write key file {}: {e}", path.display())))?;
                Ok((pair, true))
            }
            Err(e) => Err(GatewayError::Key(format!("cannot read key file {}: {e}", path.display()))),
        }
    }

    /// The pair a configuration asks for: the configured keys, else the key file, else an
    /// ephemeral pair.
    pub fn from_config(c: &SecurityConfig) -> Result<KeyPair, GatewayError> {
        if let Some(private_key) = c.private_key.as_deref().filter(|k| !k.trim().is_empty()) {
            return KeyPair::from_base64(private_key, c.public_key.as_deref());
        }
        if let Some(path) = &c.key_file {
            let (pair, generated) = KeyPair::load_or_generate(path)?;
            if generated {
                tracing::warn!(path = %path.display(), "dev mode: generated a new key pair");
            }
            return Ok(pair);
        }
        KeyPair::generate()
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_generated_once_and_reloaded() {
        let path = std::env::temp_dir().join(format!("mpush-gw-key-{}.toml", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let (a, generated) = KeyPair::load_or_generate(&path).unwrap();
        assert!(generated);
        let (b, generated) = KeyPair::load_or_generate(&path).unwrap();
        assert!(!generated);
        assert_eq!(a.public_key_base64, b.public_key_base64);
        // The public key round-trips through MPUSH's format.
        let other = KeyPair::generate().unwrap();
        assert!(KeyPair::from_base64(&a.private_key.to_base64(), Some(&other.public_key_base64)).is_err());
        assert!(KeyPair::from_base64("not base64", None).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
