//! Access tokens: HS256 JWTs carrying the user, the session and a unique id. Expiry is
//! checked against the injectable clock, not the library's wall clock.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use xcord_types::{Snowflake, Timestamp};

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// User id.
    pub sub: String,
    /// Session id.
    pub sid: String,
    /// Unique token id.
    pub jti: String,
    /// Issued at (seconds).
    pub iat: i64,
    /// Expires at (seconds).
    pub exp: i64,
    /// Always `access`.
    pub typ: String,
}

/// An authenticated caller, from a valid access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// Who.
    pub user_id: Snowflake,
    /// Which session.
    pub session_id: Snowflake,
    /// When the token expires.
    pub expires_at: Timestamp,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not a token we signed, or malformed.
    Invalid,
    /// Past its expiry.
    Expired,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKeys(…)")
    }
}

impl TokenKeys {
    /// Keys from the signing secret.
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Expiry is ours to check with the injectable clock.
        validation.validate_exp = false;
        validation.required_spec_claims = ["exp".to_owned(), "sub".to_owned()].into();
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A token for `user`/`session` valid for `ttl_secs` from `now`.
    pub fn issue(
        &self,
        user: Snowflake,
        session: Snowflake,
        now: Timestamp,
        ttl_secs: u64,
    ) -> anyhow::Result<(String, AccessClaims)> {
        let iat = now.as_millis().div_euclid(1000);
        let claims = AccessClaims {
            sub: user.to_string(),
            sid: session.to_string(),
            jti: crate::crypto::random_token(12),
            iat,
            exp: iat + i64::try_from(ttl_secs).unwrap_or(i64::MAX / 2),
            typ: "access".into(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, claims))
    }

    /// Checks signature, shape and expiry at `now`.
    pub fn verify(&self, token: &str, now: Timestamp) -> Result<AccessClaims, TokenError> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let c = data.claims;
        if c.typ != "access" {
            return Err(TokenError::Invalid);
        }
        if now.as_millis() >= c.exp.saturating_mul(1000) {
            return Err(TokenError::Expired);
        }
        Ok(c)
    }
}

impl AccessClaims {
    /// The caller these claims name, if the ids parse.
    pub fn caller(&self) -> Option<Caller> {
        Some(Caller {
            user_id: self.sub.parse().ok()?,
            session_id: self.sid.parse().ok()?,
            expires_at: Timestamp::from_millis(self.exp.saturating_mul(1000)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_until_expiry_and_only_with_the_right_key() -> anyhow::Result<()> {
        let keys = TokenKeys::new(b"0123456789abcdef0123456789abcdef");
        let now = Timestamp::from_millis(1_800_000_000_000);
        let (tok, claims) = keys.issue(Snowflake::from_i64(5), Snowflake::from_i64(6), now, 900)?;
        let got = keys
            .verify(&tok, now.plus_millis(899_000))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        assert_eq!(got, claims);
        let caller = got.caller().ok_or_else(|| anyhow::anyhow!("caller"))?;
        assert_eq!((caller.user_id.get(), caller.session_id.get()), (5, 6));
        assert_eq!(
            keys.verify(&tok, now.plus_millis(900_000)),
            Err(TokenError::Expired)
        );
        let other = TokenKeys::new(b"another-secret-another-secret-xx");
        assert_eq!(other.verify(&tok, now), Err(TokenError::Invalid));
        assert_eq!(keys.verify("not.a.token", now), Err(TokenError::Invalid));
        let mut forged = tok.clone();
        forged.push('x');
        assert_eq!(keys.verify(&forged, now), Err(TokenError::Invalid));
        Ok(())
    }
}
