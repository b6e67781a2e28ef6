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

fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().to_owned())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
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
