//! Auth bodies: register, login, tokens, e-mail flows, 2FA and sessions.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::users::SelfUser;
use crate::{Snowflake, Timestamp};

/// `POST /auth/register`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// E-mail address.
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// 3–32 of `[A-Za-z0-9_.-]`, unique regardless of case.
    #[schema(min_length = 3, max_length = 32, pattern = "^[A-Za-z0-9_.-]+$")]
    pub username: String,
    /// 8–128 characters with an upper-case letter, a lower-case letter and a digit.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    /// `YYYY-MM-DD` (or an RFC 3339 time); under 13 is refused.
    pub date_of_birth: Option<String>,
}

/// The answer to a registration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// The new user's id.
    pub user_id: Snowflake,
    /// Username as stored.
    pub username: String,
    /// E-mail as stored (lower-cased).
    pub email: String,
    /// Whether a verification e-mail was queued.
    pub verification_email_sent: bool,
    /// Present unless e-mail verification is required before login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_token: Option<String>,
    /// Present unless e-mail verification is required before login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    /// Present unless e-mail verification is required before login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<SelfUser>,
}

/// `POST /auth/login`: `email` or `username` (either may hold either), and the password.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    /// E-mail address (or a username).
    pub email: Option<String>,
    /// Username (or an e-mail address).
    pub username: Option<String>,
    /// Password.
    pub password: String,
    /// Accepted for compatibility; not checked.
    pub captcha: Option<String>,
}

/// Tokens and the signed-in user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginSuccess {
    /// Bearer token for API calls (15 minutes by default).
    pub access_token: String,
    /// Single-use token for `POST /auth/refresh` (7 days by default).
    pub refresh_token: String,
    /// The signed-in user.
    pub user: SelfUser,
}

/// The first step of a login with two-factor authentication on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MfaChallenge {
    /// Always `true`.
    pub mfa_required: bool,
    /// Pass to `POST /auth/login/mfa` with a code within 5 minutes.
    pub ticket: String,
}

/// The answer to `POST /auth/login`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    /// Signed in.
    Success(Box<LoginSuccess>),
    /// A second factor is needed.
    Mfa(MfaChallenge),
}

/// `POST /auth/login/mfa`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct MfaLoginRequest {
    /// From the first login step.
    pub ticket: String,
    /// A 6-digit TOTP code or an unused backup code.
    pub code: String,
}

/// `POST /auth/guest`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct GuestRequest {
    /// Same rules as a registered username.
    #[schema(min_length = 3, max_length = 32, pattern = "^[A-Za-z0-9_.-]+$")]
    pub username: String,
}

/// `POST /auth/refresh`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RefreshRequest {
    /// The current refresh token; it is spent by this call.
    pub refresh_token: String,
}

/// A fresh access and refresh token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    /// Bearer token for API calls.
    pub access_token: String,
    /// The next refresh token.
    pub refresh_token: String,
}

/// A body holding just a token (`POST /auth/verify-email`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// The token from the e-mail.
    pub token: String,
}

/// `POST /auth/forgot-password`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ForgotPasswordRequest {
    /// The account's address.
    pub email: String,
}

/// `POST /auth/reset-password`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetPasswordRequest {
    /// The token from the e-mail.
    pub token: String,
    /// The new password (same policy as registration).
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// `{success, message?}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SuccessResponse {
    /// Whether it worked.
    pub success: bool,
    /// A sentence for people.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `{message}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageResponse {
    /// A sentence for people.
    pub message: String,
}

/// `POST /auth/enable-2fa`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnableMfaResponse {
    /// Base32 TOTP secret, for manual entry.
    pub secret: String,
    /// Base64 PNG of the `otpauth://` URI as a QR code.
    pub qr_code: String,
    /// The `otpauth://` URI itself.
    pub otpauth_url: String,
    /// Ten single-use backup codes; shown once.
    pub backup_codes: Vec<String>,
}

/// A body holding a 2FA code.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CodeRequest {
    /// A 6-digit TOTP code (or, where accepted, a backup code).
    pub code: String,
}

/// Whether two-factor authentication is on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MfaState {
    /// On or off.
    pub enabled: bool,
}

/// One login session.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    /// Session id.
    pub id: Snowflake,
    /// Device description from the user agent, e.g. `Firefox on Linux`.
    #[schema(required = true)]
    pub device: Option<String>,
    /// The User-Agent at login.
    #[schema(required = true)]
    pub user_agent: Option<String>,
    /// The address at login.
    #[schema(required = true)]
    pub ip: Option<String>,
    /// Login time.
    pub created_at: Timestamp,
    /// Last login or refresh.
    pub last_used_at: Timestamp,
    /// When the session ends unless refreshed.
    pub expires_at: Timestamp,
    /// Whether this is the session making the request.
    pub current: bool,
}

/// `{sessions: [...]}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionList {
    /// Live sessions, oldest first.
    pub sessions: Vec<Session>,
}
