//! Secrets generated on first start and kept in the data directory, so restarts keep
//! sessions valid without any configuration.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;

/// Reads the secret stored in `dir/name`, or generates `bytes` random bytes, stores them
/// hex-encoded with owner-only permissions, and returns them. Two processes racing on a
/// fresh data directory agree: only one file creation can win, and the loser reads it.
pub fn load_or_create(dir: &Path, name: &str, bytes: usize) -> anyhow::Result<String> {
    let path = dir.join(name);
    if let Some(existing) = read(&path)? {
        return Ok(existing);
    }
    let mut raw = vec![0u8; bytes];
    rand::fill(&mut raw[..]);
    let secret = hex::encode(raw);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    match opts.open(&path) {
        Ok(mut f) => {
            f.write_all(secret.as_bytes())
                .and_then(|()| f.sync_all())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            read(&path)?.with_context(|| format!("{} is empty", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

/// As [`load_or_create`], except that without a stored secret and with a `master` secret
/// configured (`XCORD_JWT_SECRET`), the secret is derived from the master instead of
/// generated: every node of a deployment given the same master agrees on it, whatever its
/// data directory. A secret already stored wins, so existing data stays readable.
pub fn load_or_derive(
    dir: &Path,
    name: &str,
    bytes: usize,
    master: Option<&str>,
) -> anyhow::Result<String> {
    if let Some(existing) = read(&dir.join(name))? {
        return Ok(existing);
    }
    match master {
        Some(m) => {
            use sha2::Digest as _;
            let mut out = Vec::with_capacity(bytes);
            let mut counter = 0u32;
            while out.len() < bytes {
                let mut h = sha2::Sha256::new();
                h.update(b"xcord secret\0");
                h.update(name.as_bytes());
                h.update([0]);
                h.update(counter.to_be_bytes());
                h.update(m.as_bytes());
                out.extend_from_slice(&h.finalize());
                counter += 1;
            }
            out.truncate(bytes);
            Ok(hex::encode(out))
        }
        None => load_or_create(dir, name, bytes),
    }
}

fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod derive_tests {
    use super::*;

    #[test]
    fn nodes_with_one_master_agree_and_stored_secrets_win() -> anyhow::Result<()> {
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let master = Some("0123456789abcdef0123456789abcdef");
        let ka = load_or_derive(a.path(), "secret_key", 32, master)?;
        let kb = load_or_derive(b.path(), "secret_key", 32, master)?;
        assert_eq!(ka, kb);
        assert_eq!(ka.len(), 64);
        assert_ne!(ka, load_or_derive(a.path(), "cdn_key", 32, master)?);
        assert_ne!(
            ka,
            load_or_derive(
                a.path(),
                "secret_key",
                32,
                Some("another master secret value 32b")
            )?
        );
        // Nothing was written: the derivation stays tied to the master.
        assert!(!a.path().join("secret_key").exists());
        // A stored secret is kept.
        let stored = load_or_create(b.path(), "cdn_key", 32)?;
        assert_eq!(load_or_derive(b.path(), "cdn_key", 32, master)?, stored);
        // Without a master, one is generated and stored.
        let c = tempfile::tempdir()?;
        let kc = load_or_derive(c.path(), "secret_key", 32, None)?;
        assert_eq!(kc, load_or_create(c.path(), "secret_key", 32)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_and_private() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let a = load_or_create(dir.path(), "jwt_secret", 64)?;
        assert_eq!(a.len(), 128);
        let b = load_or_create(dir.path(), "jwt_secret", 64)?;
        assert_eq!(a, b);
        let other = load_or_create(dir.path(), "other", 32)?;
        assert_ne!(a, other);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join("jwt_secret"))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        Ok(())
    }
}
