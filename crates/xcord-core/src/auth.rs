//! Accounts and authentication: register, login (with TOTP), guests, refresh rotation,
//! logout, e-mail verification, password reset, 2FA management and sessions.

use totp_rs::{Secret, Totp};
use xcord_bus::Topic;
use xcord_store::{NewSession, NewUser, RefreshOutcome, StoreError, TokenPurpose, UserRecord};
use xcord_types::events::Event;
use xcord_types::rest::auth::{
    EnableMfaResponse, LoginRequest, LoginResponse, LoginSuccess, MessageResponse, MfaChallenge,
    MfaLoginRequest, MfaState, RegisterRequest, RegisterResponse, Session, SessionList,
    SuccessResponse, TokenPair,
};
use xcord_types::{Snowflake, Timestamp};

use crate::crypto::{random_token, sha256_hex};
use crate::error::{AuthFailure, Clash, Denial, Entity, Refusal};
use crate::mail::Mail;
use crate::password::{hash_password, needs_rehash, verify_password};
use crate::token::TokenError;
use crate::unit_of_work::UnitOfWork;
use crate::validate::{self, Violations};
use crate::{Caller, ClientInfo, Core, Error, Result};

const VERIFY_TTL_MS: i64 = 24 * 3600 * 1000;
const RESET_TTL_MS: i64 = 3600 * 1000;
const MFA_TICKET_TTL_MS: i64 = 5 * 60 * 1000;
const MFA_TICKET_ATTEMPTS: i64 = 5;
const BACKUP_CODES: usize = 10;

/// A validated access token: who, and which token (for logout).
#[derive(Debug, Clone)]
pub struct AuthContext {
    /// The caller.
    pub caller: Caller,
    /// The token's unique id.
    pub jti: String,
}

fn invalid_login() -> Error {
    Error::Unauthenticated(AuthFailure::WrongCredentials)
}

fn bad_code() -> Error {
    Error::Refused(Refusal::WrongTwoFactorCode)
}

/// A short device description from a User-Agent, e.g. `Firefox on Linux`.
pub fn describe_device(ua: &str) -> Option<String> {
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("python", "Python"),
        ("okhttp", "Android app"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    let os = [
        ("Windows", "Windows"),
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("Mac OS X", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(needle, _)| ua.contains(needle))
    .map(|(_, name)| *name);
    match (browser, os) {
        (Some(b), Some(o)) => Some(format!("{b} on {o}")),
        (Some(b), None) => Some(b.to_owned()),
        (None, Some(o)) => Some(o.to_owned()),
        (None, None) => None,
    }
}

/// xcord's TOTP parameters: SHA-1, 6 digits, 30 s steps, one step of skew, issuer `xcord`.
fn build_totp(secret: &[u8], account: &str) -> Result<Totp> {
    totp_rs::Builder::new()
        .with_secret(secret.to_vec())
        .with_account_name(account.to_owned())
        .with_issuer(Some("xcord"))
        .build()
        .map_err(|e| Error::Internal(anyhow::anyhow!("TOTP: {e:?}")))
}

fn normalize_backup_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

impl Core {
    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub(crate) async fn user(&self, id: Snowflake) -> Result<UserRecord> {
        self.store
            .user_by_id(id)
            .await?
            .ok_or(Error::NotFound(Entity::User))
    }

    /// An access token for a socket that names `user` without presenting a token (SPEC §7,
    /// the Hype profile's WebSocket): granted only when `user` holds a live session whose
    /// last sign-in came from the same address, and tied to that session, so that ending it
    /// (logout, revocation) ends the socket too. docs/compat.md weighs the trade-off.
    pub async fn socket_token_for(&self, user: Snowflake, ip: &str) -> Result<String> {
        let now = self.now();
        let sessions = self.store.live_sessions(user, now).await?;
        let session = sessions
            .iter()
            .filter(|s| s.ip.as_deref() == Some(ip))
            .max_by_key(|s| s.last_used_at)
            .ok_or(Error::Unauthenticated(AuthFailure::Anonymous))?;
        let (token, _) = self
            .tokens
            .issue(user, session.id, now, self.settings.access_ttl_secs)
            .map_err(Error::Unavailable)?;
        Ok(token)
    }

    /// Checks a bearer token: signature, expiry (by the core's clock) and revocation.
    pub fn authenticate(&self, token: &str) -> Result<AuthContext> {
        let now = self.now();
        let claims = self.tokens.verify(token, now).map_err(|e| match e {
            TokenError::Invalid => Error::Unauthenticated(AuthFailure::InvalidToken),
            TokenError::Expired => Error::Unauthenticated(AuthFailure::TokenExpired),
        })?;
        let caller = claims
            .caller()
            .ok_or(Error::Unauthenticated(AuthFailure::InvalidToken))?;
        if self
            .revocations
            .is_revoked(caller.session_id, &claims.jti, now)
        {
            return Err(Error::Unauthenticated(AuthFailure::TokenRevoked));
        }
        Ok(AuthContext {
            caller,
            jti: claims.jti,
        })
    }

    /// Starts a session and hands out its first tokens.
    async fn start_session(&self, user: &UserRecord, client: &ClientInfo) -> Result<LoginSuccess> {
        let now = self.now();
        let refresh = random_token(32);
        let session = NewSession {
            id: self.ids.next_id(),
            user_id: user.id,
            device: client.user_agent.as_deref().and_then(describe_device),
            user_agent: client
                .user_agent
                .as_ref()
                .map(|ua| ua.chars().take(512).collect()),
            ip: client.ip.clone(),
            now,
            expires_at: now.plus_millis(self.refresh_ttl_ms()),
            refresh_hash: sha256_hex(&refresh),
        };
        self.store.create_session(&session).await?;
        let (access, _) = self
            .tokens
            .issue(user.id, session.id, now, self.settings.access_ttl_secs)
            .map_err(Error::Internal)?;
        self.store.touch_login(user.id, now).await?;
        Ok(LoginSuccess {
            access_token: access,
            refresh_token: refresh,
            user: Self::self_user(user),
        })
    }

    fn refresh_ttl_ms(&self) -> i64 {
        i64::try_from(self.settings.refresh_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 4)
    }

    fn access_ttl_ms(&self) -> i64 {
        i64::try_from(self.settings.access_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX / 4)
    }

    /// Creates a single-use token for `purpose`, valid for `ttl_ms`; returns it in clear.
    async fn issue_user_token(
        &self,
        user: Snowflake,
        purpose: TokenPurpose,
        ttl_ms: i64,
    ) -> Result<String> {
        let token = random_token(32);
        let now = self.now();
        self.store
            .create_user_token(
                &sha256_hex(&token),
                user,
                purpose,
                now.plus_millis(ttl_ms),
                now,
            )
            .await?;
        Ok(token)
    }

    pub(crate) async fn send_verification(&self, user: &UserRecord) -> Result<bool> {
        let Some(email) = &user.email else {
            return Ok(false);
        };
        let token = self
            .issue_user_token(user.id, TokenPurpose::VerifyEmail, VERIFY_TTL_MS)
            .await?;
        self.send_mail(Mail {
            to: email.clone(),
            subject: "Verify your xcord e-mail address".into(),
            text: format!(
                "Hello {},\n\nconfirm this address for your xcord account:\n\n  {}/verify-email?token={token}\n\n\
                 Or send this token to POST /api/v1/auth/verify-email:\n\n  verification token: {token}\n\n\
                 It is valid for 24 hours. If you did not sign up, ignore this message.\n",
                user.username, self.settings.public_url
            ),
        });
        Ok(true)
    }

    pub(crate) fn conflict(e: StoreError) -> Error {
        match &e {
            StoreError::Conflict(name) if name.contains("username") => {
                Error::Conflict(Clash::UsernameTaken)
            }
            StoreError::Conflict(name) if name.contains("email") => {
                Error::Conflict(Clash::EmailTaken)
            }
            _ => e.into(),
        }
    }

    /// `POST /auth/register`.
    pub async fn register(
        &self,
        req: RegisterRequest,
        client: &ClientInfo,
    ) -> Result<RegisterResponse> {
        let now = self.now();
        let mut v = Violations::default();
        let email = v.check(validate::email("email", &req.email));
        let username = v.check(validate::username("username", &req.username));
        v.check(validate::password("password", &req.password));
        let dob = match &req.date_of_birth {
            Some(d) => v.check(validate::date_of_birth("dateOfBirth", d, now)),
            None => None,
        };
        v.finish()?;
        let (Some(email), Some(username)) = (email, username) else {
            return Err(Error::Internal(anyhow::anyhow!("validated fields missing")));
        };
        let hash = hash_password(self.settings.password_algorithm, req.password)
            .await
            .map_err(Error::Internal)?;
        let user = self
            .store
            .create_user(&NewUser {
                id: self.ids.next_id(),
                username,
                discriminator: validate::discriminator(),
                email: Some(email.clone()),
                password_hash: Some(hash),
                date_of_birth: dob,
                is_guest: false,
                created_at: now,
            })
            .await
            .map_err(Self::conflict)?;
        self.join_default_server(user.id).await;
        let sent = self.send_verification(&user).await?;
        let login = if self.settings.require_email_verification {
            None
        } else {
            Some(self.start_session(&user, client).await?)
        };
        Ok(RegisterResponse {
            user_id: user.id,
            username: user.username.clone(),
            email,
            verification_email_sent: sent,
            access_token: login.as_ref().map(|l| l.access_token.clone()),
            refresh_token: login.as_ref().map(|l| l.refresh_token.clone()),
            user: login.map(|l| l.user),
        })
    }

    /// `POST /auth/login`. Unknown users and wrong passwords get the same answer in the same
    /// time; with 2FA on, the answer is a ticket for [`Core::login_mfa`].
    pub async fn login(&self, req: LoginRequest, client: &ClientInfo) -> Result<LoginResponse> {
        let Some(login) = req
            .email
            .as_deref()
            .or(req.username.as_deref())
            .map(str::trim)
            .filter(|s| !s.is_empty())
        else {
            return Err(Error::invalid(
                "email",
                "required",
                "give `email` or `username`",
            ));
        };
        let user = if login.contains('@') {
            self.store.user_by_email(&login.to_lowercase()).await?
        } else {
            self.store.user_by_username(login).await?
        };
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        let matched = verify_password(
            hash.clone().unwrap_or_else(|| self.decoy_hash.clone()),
            req.password.clone(),
        )
        .await
        .map_err(Error::Internal)?;
        let (Some(user), Some(hash), true) = (user, hash, matched) else {
            return Err(invalid_login());
        };
        if self.settings.require_email_verification && !user.email_verified {
            return Err(Error::Denied(Denial::EmailUnverified));
        }
        if needs_rehash(&hash, self.settings.password_algorithm) {
            self.rehash_later(user.id, req.password);
        }
        if user.mfa_enabled {
            let ticket = self
                .issue_user_token(user.id, TokenPurpose::MfaTicket, MFA_TICKET_TTL_MS)
                .await?;
            return Ok(LoginResponse::Mfa(MfaChallenge {
                mfa_required: true,
                ticket,
            }));
        }
        Ok(LoginResponse::Success(Box::new(
            self.start_session(&user, client).await?,
        )))
    }

    /// Replaces a hash made with an older algorithm, off the request path.
    fn rehash_later(&self, user: Snowflake, password: String) {
        let store = self.store.clone();
        let algo = self.settings.password_algorithm;
        let now = self.now();
        self.spawn_background(async move {
            match hash_password(algo, password).await {
                Ok(h) => {
                    let stored = async {
                        let mut tx = store.begin_write().await?;
                        store.set_password_hash(&mut tx, user, &h, now).await?;
                        tx.commit().await
                    };
                    if let Err(e) = stored.await {
                        tracing::warn!(error = %e, "password re-hash not stored");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "password re-hash failed"),
            }
        });
    }

    /// `POST /auth/login/mfa`: the ticket from `login` and a TOTP or backup code.
    pub async fn login_mfa(
        &self,
        req: MfaLoginRequest,
        client: &ClientInfo,
    ) -> Result<LoginSuccess> {
        let now = self.now();
        let hash = sha256_hex(&req.ticket);
        let expired = || Error::Unauthenticated(AuthFailure::InvalidLoginTicket);
        let (user_id, attempts) = self
            .store
            .peek_user_token(&hash, TokenPurpose::MfaTicket, now)
            .await?
            .ok_or_else(expired)?;
        if attempts >= MFA_TICKET_ATTEMPTS {
            self.consume_token(&hash, TokenPurpose::MfaTicket, now)
                .await?;
            return Err(expired());
        }
        let user = self.user(user_id).await?;
        if !self.check_second_factor(&user, &req.code, true).await? {
            self.store.fail_user_token(&hash).await?;
            return Err(Error::Unauthenticated(AuthFailure::WrongTwoFactorCode));
        }
        // Spending the ticket can fail only if a concurrent request spent it first.
        if self
            .consume_token(&hash, TokenPurpose::MfaTicket, now)
            .await?
            .is_none()
        {
            return Err(expired());
        }
        self.start_session(&user, client).await
    }

    fn totp_for(&self, user: &UserRecord, sealed: &str) -> Result<Totp> {
        let secret = self.sealer.open(sealed).map_err(Error::Internal)?;
        let bytes = Secret::try_from_base32(&secret)
            .map_err(|e| Error::Internal(anyhow::anyhow!("stored TOTP secret: {e:?}")))?;
        build_totp(bytes.as_bytes(), &user.username)
    }

    /// Accepts a current TOTP code (each at most once) or, when allowed, an unused backup code.
    async fn check_second_factor(
        &self,
        user: &UserRecord,
        code: &str,
        allow_backup: bool,
    ) -> Result<bool> {
        let Some(sealed) = &user.mfa_secret else {
            return Ok(false);
        };
        let code = code.trim();
        let now_secs = u64::try_from(self.now().as_millis().div_euclid(1000)).unwrap_or(0);
        if code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()) {
            let totp = self.totp_for(user, sealed)?;
            return match totp.check(code, now_secs) {
                Some(step) => Ok(self
                    .store
                    .claim_mfa_step(user.id, i64::try_from(step).unwrap_or(i64::MAX))
                    .await?),
                None => Ok(false),
            };
        }
        if allow_backup {
            let normalized = normalize_backup_code(code);
            if normalized.len() == 8 {
                return Ok(self
                    .store
                    .use_backup_code(user.id, &sha256_hex(&normalized), self.now())
                    .await?);
            }
        }
        Ok(false)
    }

    /// `POST /auth/guest`: an account with no e-mail or password.
    pub async fn guest(&self, username: &str, client: &ClientInfo) -> Result<LoginSuccess> {
        let username =
            validate::username("username", username).map_err(|f| Error::Validation(vec![f]))?;
        let user = self
            .store
            .create_user(&NewUser {
                id: self.ids.next_id(),
                username,
                discriminator: validate::discriminator(),
                email: None,
                password_hash: None,
                date_of_birth: None,
                is_guest: true,
                created_at: self.now(),
            })
            .await
            .map_err(Self::conflict)?;
        self.join_default_server(user.id).await;
        self.start_session(&user, client).await
    }

    /// `POST /auth/refresh`: spends the refresh token and hands out a new pair. A token
    /// presented a second time revokes its whole session.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair> {
        let now = self.now();
        let next = random_token(32);
        let outcome = self
            .store
            .rotate_refresh_token(
                &sha256_hex(refresh_token),
                &sha256_hex(&next),
                now,
                now.plus_millis(self.refresh_ttl_ms()),
            )
            .await?;
        match outcome {
            RefreshOutcome::Rotated(session) => {
                let (access, _) = self
                    .tokens
                    .issue(
                        session.user_id,
                        session.id,
                        now,
                        self.settings.access_ttl_secs,
                    )
                    .map_err(Error::Internal)?;
                Ok(TokenPair {
                    access_token: access,
                    refresh_token: next,
                })
            }
            RefreshOutcome::Reused(session) => {
                self.revocations
                    .revoke_session(
                        &self.store,
                        session.id,
                        now.plus_millis(self.access_ttl_ms()),
                        now,
                    )
                    .await?;
                tracing::warn!(session = %session.id, user = %session.user_id, "refresh token reused; session revoked");
                Err(Error::Unauthenticated(AuthFailure::RefreshTokenReused))
            }
            RefreshOutcome::Dead | RefreshOutcome::Unknown => {
                Err(Error::Unauthenticated(AuthFailure::InvalidRefreshToken))
            }
        }
    }

    /// Ends a session: its refresh token dies and its access tokens are refused at once.
    async fn end_session(&self, user: Snowflake, session: Snowflake) -> Result<bool> {
        let now = self.now();
        let revoked = self.store.revoke_session(user, session, now).await?;
        if revoked {
            self.revocations
                .revoke_session(
                    &self.store,
                    session,
                    now.plus_millis(self.access_ttl_ms()),
                    now,
                )
                .await?;
        }
        Ok(revoked)
    }

    /// `POST /auth/logout`.
    pub async fn logout(&self, ctx: &AuthContext) -> Result<()> {
        let now = self.now();
        self.end_session(ctx.caller.user_id, ctx.caller.session_id)
            .await?;
        // Also the token itself, in case its session was already gone.
        self.revocations
            .revoke_token(&self.store, &ctx.jti, ctx.caller.expires_at, now)
            .await?;
        Ok(())
    }

    /// `POST /auth/verify-email`.
    pub async fn verify_email(&self, token: &str) -> Result<SuccessResponse> {
        let now = self.now();
        let mut uow = self.begin().await?;
        let user = self
            .store
            .consume_user_token(uow.tx(), &sha256_hex(token), TokenPurpose::VerifyEmail, now)
            .await?
            .ok_or_else(|| Error::Refused(Refusal::InvalidVerificationToken))?;
        self.store.set_email_verified(uow.tx(), user, now).await?;
        self.user_changed(&mut uow, user).await?;
        uow.commit().await?;
        Ok(SuccessResponse {
            success: true,
            message: Some("Your e-mail address is verified.".into()),
        })
    }

    /// Tells the user's sessions (and caches), when `uow` commits, that their own view
    /// changed.
    pub(crate) async fn user_changed(
        &self,
        uow: &mut UnitOfWork<'_>,
        user: Snowflake,
    ) -> Result<UserRecord> {
        let u = self
            .store
            .user_in(uow.tx(), user)
            .await?
            .ok_or(Error::NotFound(Entity::User))?;
        uow.emit(Topic::User(user), Event::UserUpdate(Self::self_user(&u)))?;
        Ok(u)
    }

    /// Spends a one-time token on its own (a login ticket); the user it was for.
    async fn consume_token(
        &self,
        hash: &str,
        purpose: TokenPurpose,
        now: Timestamp,
    ) -> Result<Option<Snowflake>> {
        let mut uow = self.begin().await?;
        let user = self
            .store
            .consume_user_token(uow.tx(), hash, purpose, now)
            .await?;
        uow.commit().await?;
        Ok(user)
    }

    /// `POST /auth/resend-verification`.
    pub async fn resend_verification(&self, caller: &Caller) -> Result<MessageResponse> {
        let user = self.user(caller.user_id).await?;
        if user.email.is_none() {
            return Err(Error::Refused(Refusal::NoEmailAddress));
        }
        if user.email_verified {
            return Err(Error::Conflict(Clash::EmailAlreadyVerified));
        }
        self.store
            .expire_user_tokens(user.id, TokenPurpose::VerifyEmail, self.now())
            .await?;
        self.send_verification(&user).await?;
        Ok(MessageResponse {
            message: "A new verification e-mail is on its way.".into(),
        })
    }

    /// `POST /auth/forgot-password`: the same answer whether or not the address is known.
    pub async fn forgot_password(&self, email: &str) -> Result<MessageResponse> {
        let email = validate::email("email", email).map_err(|f| Error::Validation(vec![f]))?;
        if let Some(user) = self.store.user_by_email(&email).await? {
            let token = self
                .issue_user_token(user.id, TokenPurpose::ResetPassword, RESET_TTL_MS)
                .await?;
            self.send_mail(Mail {
                to: email,
                subject: "Reset your xcord password".into(),
                text: format!(
                    "Hello {},\n\nsomeone asked to reset the password of your xcord account. To choose a new one:\n\n  \
                     {}/reset-password?token={token}\n\nOr send this token to POST /api/v1/auth/reset-password:\n\n  \
                     reset token: {token}\n\nIt is valid for one hour. If it was not you, ignore this message.\n",
                    user.username, self.settings.public_url
                ),
            });
        }
        Ok(MessageResponse {
            message:
                "If an account exists for this address, a password reset link has been sent to it."
                    .into(),
        })
    }

    /// `POST /auth/reset-password`: sets the password and revokes every session of the user.
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: String,
    ) -> Result<SuccessResponse> {
        validate::password("newPassword", &new_password).map_err(|f| Error::Validation(vec![f]))?;
        let now = self.now();
        let token_hash = sha256_hex(token);
        // Checked before the (slow) hashing, spent with the change it allows.
        self.store
            .peek_user_token(&token_hash, TokenPurpose::ResetPassword, now)
            .await?
            .ok_or_else(|| Error::Refused(Refusal::InvalidResetToken))?;
        let hash = hash_password(self.settings.password_algorithm, new_password)
            .await
            .map_err(Error::Internal)?;
        let mut uow = self.begin().await?;
        let user = self
            .store
            .consume_user_token(uow.tx(), &token_hash, TokenPurpose::ResetPassword, now)
            .await?
            .ok_or_else(|| Error::Refused(Refusal::InvalidResetToken))?;
        self.store
            .set_password_hash(uow.tx(), user, &hash, now)
            .await?;
        // Following the link proved the mailbox is theirs.
        self.store.set_email_verified(uow.tx(), user, now).await?;
        self.user_changed(&mut uow, user).await?;
        uow.commit().await?;
        self.store
            .expire_user_tokens(user, TokenPurpose::ResetPassword, now)
            .await?;
        self.revoke_sessions_except(user, None).await?;
        Ok(SuccessResponse {
            success: true,
            message: None,
        })
    }

    /// Revokes every session of `user` but `keep`, in storage and for live access tokens.
    pub(crate) async fn revoke_sessions_except(
        &self,
        user: Snowflake,
        keep: Option<Snowflake>,
    ) -> Result<()> {
        let now = self.now();
        let until = now.plus_millis(self.access_ttl_ms());
        for sid in self.store.revoke_all_sessions(user, keep, now).await? {
            self.revocations
                .revoke_session(&self.store, sid, until, now)
                .await?;
        }
        Ok(())
    }

    /// `POST /auth/enable-2fa`: a new secret and backup codes; 2FA turns on once a code from
    /// the secret is verified.
    pub async fn enable_mfa(&self, caller: &Caller) -> Result<EnableMfaResponse> {
        let user = self.user(caller.user_id).await?;
        if user.mfa_enabled {
            return Err(Error::Conflict(Clash::TwoFactorAlreadyEnabled));
        }
        let secret = Secret::generate();
        let encoded = secret.to_base32();
        let totp = build_totp(secret.as_bytes(), &user.username)?;
        let url = totp
            .to_url()
            .map_err(|e| Error::Internal(anyhow::anyhow!("TOTP URL: {e:?}")))?;
        let qr = totp
            .to_qr_base64()
            .map_err(|e| Error::Internal(anyhow::anyhow!("QR code: {e:?}")))?;
        let sealed = self.sealer.seal(&encoded).map_err(Error::Internal)?;
        let codes: Vec<String> = (0..BACKUP_CODES)
            .map(|_| {
                let raw = hex::encode(rand::random::<[u8; 4]>());
                format!("{}-{}", &raw[..4], &raw[4..])
            })
            .collect();
        let hashes: Vec<String> = codes
            .iter()
            .map(|c| sha256_hex(&normalize_backup_code(c)))
            .collect();
        let now = self.now();
        let mut uow = self.begin().await?;
        self.store
            .set_mfa(uow.tx(), user.id, Some(&sealed), false, now)
            .await?;
        self.store
            .replace_backup_codes(uow.tx(), user.id, &hashes)
            .await?;
        uow.commit().await?;
        Ok(EnableMfaResponse {
            secret: encoded,
            qr_code: qr,
            otpauth_url: url,
            backup_codes: codes,
        })
    }

    /// `POST /auth/verify-2fa`: turns 2FA on with a code from the new secret.
    pub async fn verify_mfa(&self, caller: &Caller, code: &str) -> Result<MfaState> {
        let user = self.user(caller.user_id).await?;
        if user.mfa_enabled {
            return Err(Error::Conflict(Clash::TwoFactorAlreadyEnabled));
        }
        if user.mfa_secret.is_none() {
            return Err(Error::Refused(Refusal::TwoFactorNotStarted));
        }
        if !self.check_second_factor(&user, code, false).await? {
            return Err(bad_code());
        }
        let now = self.now();
        let sealed = user.mfa_secret.as_deref();
        let mut uow = self.begin().await?;
        self.store
            .set_mfa(uow.tx(), user.id, sealed, true, now)
            .await?;
        self.user_changed(&mut uow, user.id).await?;
        uow.commit().await?;
        Ok(MfaState { enabled: true })
    }

    /// `POST /auth/disable-2fa`: turns 2FA off with a TOTP or backup code.
    pub async fn disable_mfa(&self, caller: &Caller, code: &str) -> Result<MfaState> {
        let user = self.user(caller.user_id).await?;
        if !user.mfa_enabled {
            return Err(Error::Refused(Refusal::TwoFactorNotEnabled));
        }
        if !self.check_second_factor(&user, code, true).await? {
            return Err(bad_code());
        }
        let mut uow = self.begin().await?;
        self.store
            .set_mfa(uow.tx(), user.id, None, false, self.now())
            .await?;
        self.store
            .replace_backup_codes(uow.tx(), user.id, &[])
            .await?;
        self.user_changed(&mut uow, user.id).await?;
        uow.commit().await?;
        Ok(MfaState { enabled: false })
    }

    /// `GET /auth/sessions`.
    pub async fn sessions(&self, caller: &Caller) -> Result<SessionList> {
        let sessions = self.store.live_sessions(caller.user_id, self.now()).await?;
        Ok(SessionList {
            sessions: sessions
                .into_iter()
                .map(|s| Session {
                    current: s.id == caller.session_id,
                    id: s.id,
                    device: s.device,
                    user_agent: s.user_agent,
                    ip: s.ip,
                    created_at: s.created_at,
                    last_used_at: s.last_used_at,
                    expires_at: s.expires_at,
                })
                .collect(),
        })
    }

    /// `DELETE /auth/sessions/{id}`: 404 unless it is one of the caller's live sessions.
    pub async fn revoke_session(&self, caller: &Caller, session: Snowflake) -> Result<()> {
        if self.end_session(caller.user_id, session).await? {
            Ok(())
        } else {
            Err(Error::NotFound(Entity::Session))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_are_described_from_user_agents() {
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(describe_device(ff).as_deref(), Some("Firefox on Linux"));
        let chrome = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36";
        assert_eq!(
            describe_device(chrome).as_deref(),
            Some("Chrome on Windows")
        );
        assert_eq!(describe_device("curl/8.5.0").as_deref(), Some("curl"));
        assert_eq!(describe_device("???"), None);
    }

    #[test]
    fn backup_codes_normalize() {
        assert_eq!(normalize_backup_code(" AB12-cd34 "), "ab12cd34");
    }
}
