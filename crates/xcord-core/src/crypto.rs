//! Small cryptographic pieces: random tokens, SHA-256 digests, and sealing of secrets at rest.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use sha2::{Digest, Sha256};

/// A random token of `bytes` bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut raw = vec![0u8; bytes];
    rand::fill(&mut raw[..]);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Hex SHA-256 of `s`. Tokens are stored only as digests: they are long random strings, so
/// a fast hash is enough and lookups stay indexable.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Seals small secrets (TOTP keys) with ChaCha20-Poly1305 under a key kept in the data
/// directory, so a database dump alone does not reveal them.
#[derive(Clone)]
pub struct SecretBox {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(…)")
    }
}

impl SecretBox {
    /// A box for a 32-byte key.
    pub fn new(key: &[u8]) -> anyhow::Result<Self> {
        let cipher = ChaCha20Poly1305::new_from_slice(key)
            .map_err(|_| anyhow::anyhow!("the sealing key must be 32 bytes"))?;
        Ok(Self { cipher })
    }

    /// `base64(nonce ‖ ciphertext)`.
    pub fn seal(&self, plaintext: &str) -> anyhow::Result<String> {
        let nonce_bytes: [u8; 12] = rand::random();
        let nonce = Nonce::from(nonce_bytes);
        let ct = self
            .cipher
            .encrypt(&nonce, plaintext.as_bytes())
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        Ok(STANDARD.encode(out))
    }

    /// Opens what [`SecretBox::seal`] made; fails on tampering or a different key.
    pub fn open(&self, sealed: &str) -> anyhow::Result<String> {
        let raw = STANDARD.decode(sealed)?;
        anyhow::ensure!(raw.len() > 12, "sealed value too short");
        let (n, ct) = raw.split_at(12);
        let nonce_bytes: [u8; 12] = n.try_into()?;
        let pt = self
            .cipher
            .decrypt(&Nonce::from(nonce_bytes), ct)
            .map_err(|_| anyhow::anyhow!("sealed value does not open with this key"))?;
        Ok(String::from_utf8(pt)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_detects_tampering() -> anyhow::Result<()> {
        let b = SecretBox::new(&[7u8; 32])?;
        let sealed = b.seal("JBSWY3DPEHPK3PXP")?;
        assert!(!sealed.contains("JBSWY3DP"));
        assert_ne!(sealed, b.seal("JBSWY3DPEHPK3PXP")?, "fresh nonce each time");
        assert_eq!(b.open(&sealed)?, "JBSWY3DPEHPK3PXP");
        let mut raw = STANDARD.decode(&sealed)?;
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(b.open(&STANDARD.encode(raw)).is_err());
        assert!(SecretBox::new(&[8u8; 32])?.open(&sealed).is_err());
        assert!(SecretBox::new(&[1u8; 16]).is_err());
        Ok(())
    }

    #[test]
    fn tokens_are_random_and_digests_stable() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
