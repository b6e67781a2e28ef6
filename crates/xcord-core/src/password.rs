//! Password hashing. bcrypt and argon2id hashes both verify whatever is configured for new
//! hashes; all hashing runs on the blocking pool, never on the async workers.

use anyhow::Context as _;

/// How new password hashes are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordAlgorithm {
    /// bcrypt with this cost (4–31).
    Bcrypt(u32),
    /// argon2id with the library defaults (19 MiB, 2 passes).
    Argon2id,
}

impl std::str::FromStr for PasswordAlgorithm {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("argon2id") || s.eq_ignore_ascii_case("argon2") {
            return Ok(Self::Argon2id);
        }
        if s.eq_ignore_ascii_case("bcrypt") {
            return Ok(Self::Bcrypt(12));
        }
        if let Some(cost) = s.strip_prefix("bcrypt:") {
            let cost: u32 = cost.parse().context("bcrypt cost must be a number")?;
            anyhow::ensure!(
                (4..=31).contains(&cost),
                "bcrypt cost must be 4–31, got {cost}"
            );
            return Ok(Self::Bcrypt(cost));
        }
        anyhow::bail!("expected `bcrypt:COST` or `argon2id`, got {s:?}")
    }
}

/// Hashes `password` with `algo` on the blocking pool.
pub async fn hash_password(algo: PasswordAlgorithm, password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || hash_now(algo, &password))
        .await
        .context("password hashing task")?
}

fn hash_now(algo: PasswordAlgorithm, password: &str) -> anyhow::Result<String> {
    match algo {
        PasswordAlgorithm::Bcrypt(cost) => bcrypt::hash(password, cost).context("bcrypt"),
        PasswordAlgorithm::Argon2id => {
            use argon2::PasswordHasher as _;
            argon2::Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2: {e}"))
        }
    }
}

/// Whether `password` matches `hash` (bcrypt `$2…$` or argon2 `$argon2…$`), on the blocking
/// pool. A malformed stored hash is an error, not a mismatch.
pub async fn verify_password(hash: String, password: String) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || verify_now(&hash, &password))
        .await
        .context("password verification task")?
}

fn verify_now(hash: &str, password: &str) -> anyhow::Result<bool> {
    if hash.starts_with("$argon2") {
        use argon2::PasswordVerifier as _;
        let parsed = argon2::password_hash::phc::PasswordHash::new(hash)
            .map_err(|e| anyhow::anyhow!("stored argon2 hash: {e}"))?;
        return Ok(argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok());
    }
    bcrypt::verify(password, hash).context("stored bcrypt hash")
}

/// Whether a stored hash was made with something other than `algo`, so that a successful
/// login should replace it.
pub fn needs_rehash(hash: &str, algo: PasswordAlgorithm) -> bool {
    match algo {
        PasswordAlgorithm::Argon2id => !hash.starts_with("$argon2id$"),
        PasswordAlgorithm::Bcrypt(cost) => {
            // `$2b$12$…`: the cost sits between the second and third `$`.
            let mut parts = hash.split('$');
            let (_, variant, stored) = (parts.next(), parts.next(), parts.next());
            !(variant.is_some_and(|v| v.starts_with('2'))
                && stored.and_then(|c| c.parse::<u32>().ok()) == Some(cost))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn both_algorithms_verify_and_rehash_is_detected() -> anyhow::Result<()> {
        let b = hash_password(PasswordAlgorithm::Bcrypt(4), "Secret123".into()).await?;
        let a = hash_password(PasswordAlgorithm::Argon2id, "Secret123".into()).await?;
        assert!(b.starts_with("$2"));
        assert!(a.starts_with("$argon2id$"));
        for h in [&b, &a] {
            assert!(verify_password(h.clone(), "Secret123".into()).await?);
            assert!(!verify_password(h.clone(), "secret123".into()).await?);
        }
        assert!(!needs_rehash(&b, PasswordAlgorithm::Bcrypt(4)));
        assert!(needs_rehash(&b, PasswordAlgorithm::Bcrypt(5)));
        assert!(needs_rehash(&b, PasswordAlgorithm::Argon2id));
        assert!(needs_rehash(&a, PasswordAlgorithm::Bcrypt(4)));
        assert!(!needs_rehash(&a, PasswordAlgorithm::Argon2id));
        assert!(verify_password("garbage".into(), "x".into()).await.is_err());
        Ok(())
    }

    #[test]
    fn algorithm_parses() {
        assert_eq!(
            "bcrypt:10".parse::<PasswordAlgorithm>().ok(),
            Some(PasswordAlgorithm::Bcrypt(10))
        );
        assert_eq!(
            "argon2id".parse::<PasswordAlgorithm>().ok(),
            Some(PasswordAlgorithm::Argon2id)
        );
        assert!("bcrypt:3".parse::<PasswordAlgorithm>().is_err());
        assert!("md5".parse::<PasswordAlgorithm>().is_err());
    }
}
