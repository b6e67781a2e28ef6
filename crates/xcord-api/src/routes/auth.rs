//! `/auth/*`.

use axum::Json as JsonResponse;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use xcord_core::ratelimit::Tier;
use xcord_types::ErrorBody;
use xcord_types::Snowflake;
use xcord_types::rest::auth::{
    CodeRequest, EnableMfaResponse, ForgotPasswordRequest, GuestRequest, LoginRequest,
    LoginResponse, LoginSuccess, MessageResponse, MfaLoginRequest, MfaState, RefreshRequest,
    RegisterRequest, RegisterResponse, ResetPasswordRequest, SessionList, SuccessResponse,
    TokenPair, TokenRequest,
};
use xcord_types::rest::users::SelfUser;

use crate::AppState;
use crate::auth::{Auth, Client, RateHeaders};
use crate::error::ApiError;
use crate::extract::{Json, Path};

type ApiResult<T> = Result<T, ApiError>;

/// Create an account.
#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterRequest, responses(
    (status = 201, description = "Created; tokens unless e-mail verification is required", body = RegisterResponse),
    (status = 409, description = "Username or e-mail taken", body = ErrorBody),
    (status = 422, description = "Invalid fields", body = ErrorBody),
    (status = 429, description = "Rate limited (3 per hour per address)", body = ErrorBody)))]
pub async fn register(
    State(s): State<AppState>,
    Client(c): Client,
    Json(req): Json<RegisterRequest>,
) -> ApiResult<Response> {
    let out = s.core.register(req, &c).await?;
    Ok((StatusCode::CREATED, JsonResponse(out)).into_response())
}

/// Log in with e-mail or username and password.
#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest, responses(
    (status = 200, description = "Tokens, or `{mfaRequired, ticket}` with 2FA on", body = LoginResponse),
    (status = 401, description = "Wrong login or password (the same for unknown users)", body = ErrorBody),
    (status = 403, description = "E-mail not verified (when required)", body = ErrorBody),
    (status = 429, description = "Rate limited (5 per minute per address)", body = ErrorBody)))]
pub async fn login(
    State(s): State<AppState>,
    Client(c): Client,
    Json(req): Json<LoginRequest>,
) -> ApiResult<JsonResponse<LoginResponse>> {
    Ok(JsonResponse(s.core.login(req, &c).await?))
}

/// Second login step with a TOTP or backup code.
#[utoipa::path(post, path = "/auth/login/mfa", tag = "auth", request_body = MfaLoginRequest, responses(
    (status = 200, description = "Signed in", body = LoginSuccess),
    (status = 401, description = "Wrong code, or the ticket is spent or expired", body = ErrorBody)))]
pub async fn login_mfa(
    State(s): State<AppState>,
    Client(c): Client,
    Json(req): Json<MfaLoginRequest>,
) -> ApiResult<JsonResponse<LoginSuccess>> {
    Ok(JsonResponse(s.core.login_mfa(req, &c).await?))
}

/// Sign in as a guest (no e-mail or password; upgrade later with `PATCH /users/@me`).
#[utoipa::path(post, path = "/auth/guest", tag = "auth", request_body = GuestRequest, responses(
    (status = 200, description = "Signed in as a new guest", body = LoginSuccess),
    (status = 409, description = "Username taken", body = ErrorBody),
    (status = 422, description = "Invalid username", body = ErrorBody)))]
pub async fn guest(
    State(s): State<AppState>,
    Client(c): Client,
    Json(req): Json<GuestRequest>,
) -> ApiResult<JsonResponse<LoginSuccess>> {
    Ok(JsonResponse(s.core.guest(&req.username, &c).await?))
}

/// Exchange a refresh token for a new pair; the old one is spent.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest, responses(
    (status = 200, description = "New tokens", body = TokenPair),
    (status = 401, description = "Invalid, expired or reused token (reuse revokes the session)", body = ErrorBody)))]
pub async fn refresh(
    State(s): State<AppState>,
    Json(req): Json<RefreshRequest>,
) -> ApiResult<JsonResponse<TokenPair>> {
    Ok(JsonResponse(s.core.refresh(&req.refresh_token).await?))
}

/// End this session: its refresh token dies and its access tokens are refused at once.
#[utoipa::path(post, path = "/auth/logout", tag = "auth", responses(
    (status = 204, description = "Logged out"), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub async fn logout(State(s): State<AppState>, auth: Auth) -> ApiResult<StatusCode> {
    s.core.logout(&auth.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user.
#[utoipa::path(get, path = "/auth/me", tag = "auth", responses(
    (status = 200, description = "The user", body = SelfUser), (status = 401, description = "Not signed in", body = ErrorBody)))]
pub async fn auth_me(State(s): State<AppState>, auth: Auth) -> ApiResult<JsonResponse<SelfUser>> {
    Ok(JsonResponse(s.core.me(auth.caller()).await?))
}

/// Confirm an e-mail address with the mailed token.
#[utoipa::path(post, path = "/auth/verify-email", tag = "auth", request_body = TokenRequest, responses(
    (status = 200, description = "Verified", body = SuccessResponse),
    (status = 400, description = "Invalid, used or expired token", body = ErrorBody)))]
pub async fn verify_email(
    State(s): State<AppState>,
    Json(req): Json<TokenRequest>,
) -> ApiResult<JsonResponse<SuccessResponse>> {
    Ok(JsonResponse(s.core.verify_email(&req.token).await?))
}

/// Mail a new verification link.
#[utoipa::path(post, path = "/auth/resend-verification", tag = "auth", responses(
    (status = 200, description = "Sent", body = MessageResponse),
    (status = 409, description = "Already verified", body = ErrorBody),
    (status = 400, description = "No e-mail address (a guest)")))]
pub async fn resend_verification(
    State(s): State<AppState>,
    auth: Auth,
) -> ApiResult<JsonResponse<MessageResponse>> {
    Ok(JsonResponse(
        s.core.resend_verification(auth.caller()).await?,
    ))
}

/// Mail a password-reset link; the answer is the same for unknown addresses.
#[utoipa::path(post, path = "/auth/forgot-password", tag = "auth", request_body = ForgotPasswordRequest, responses(
    (status = 200, description = "Accepted", body = MessageResponse),
    (status = 429, description = "Rate limited (3 per hour per address)", body = ErrorBody)))]
pub async fn forgot_password(
    State(s): State<AppState>,
    Json(req): Json<ForgotPasswordRequest>,
) -> ApiResult<Response> {
    let key = req.email.trim().to_lowercase();
    let decision = s.core.rate_limit(Tier::PasswordReset, &key).await?;
    let out = s.core.forgot_password(&req.email).await?;
    Ok((RateHeaders(decision), JsonResponse(out)).into_response())
}

/// Set a new password with the mailed token; every session of the user is revoked.
#[utoipa::path(post, path = "/auth/reset-password", tag = "auth", request_body = ResetPasswordRequest, responses(
    (status = 200, description = "Changed", body = SuccessResponse),
    (status = 400, description = "Invalid, used or expired token", body = ErrorBody),
    (status = 422, description = "Weak password", body = ErrorBody)))]
pub async fn reset_password(
    State(s): State<AppState>,
    Json(req): Json<ResetPasswordRequest>,
) -> ApiResult<JsonResponse<SuccessResponse>> {
    Ok(JsonResponse(
        s.core.reset_password(&req.token, req.new_password).await?,
    ))
}

/// Start enabling TOTP: a secret, its QR code and backup codes.
#[utoipa::path(post, path = "/auth/enable-2fa", tag = "auth", responses(
    (status = 200, description = "Secret and backup codes", body = EnableMfaResponse),
    (status = 409, description = "Already enabled", body = ErrorBody)))]
pub async fn enable_2fa(
    State(s): State<AppState>,
    auth: Auth,
) -> ApiResult<JsonResponse<EnableMfaResponse>> {
    Ok(JsonResponse(s.core.enable_mfa(auth.caller()).await?))
}

/// Turn TOTP on with a code from the new secret.
#[utoipa::path(post, path = "/auth/verify-2fa", tag = "auth", request_body = CodeRequest, responses(
    (status = 200, description = "Enabled", body = MfaState),
    (status = 400, description = "Wrong code, or enable-2fa not called", body = ErrorBody),
    (status = 409, description = "Already enabled")))]
pub async fn verify_2fa(
    State(s): State<AppState>,
    auth: Auth,
    Json(req): Json<CodeRequest>,
) -> ApiResult<JsonResponse<MfaState>> {
    Ok(JsonResponse(
        s.core.verify_mfa(auth.caller(), &req.code).await?,
    ))
}

/// Turn TOTP off with a TOTP or backup code.
#[utoipa::path(post, path = "/auth/disable-2fa", tag = "auth", request_body = CodeRequest, responses(
    (status = 200, description = "Disabled", body = MfaState),
    (status = 400, description = "Wrong code, or 2FA is off", body = ErrorBody)))]
pub async fn disable_2fa(
    State(s): State<AppState>,
    auth: Auth,
    Json(req): Json<CodeRequest>,
) -> ApiResult<JsonResponse<MfaState>> {
    Ok(JsonResponse(
        s.core.disable_mfa(auth.caller(), &req.code).await?,
    ))
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/auth/sessions", tag = "auth", responses(
    (status = 200, description = "Sessions", body = SessionList)))]
pub async fn sessions(
    State(s): State<AppState>,
    auth: Auth,
) -> ApiResult<JsonResponse<SessionList>> {
    Ok(JsonResponse(s.core.sessions(auth.caller()).await?))
}

/// Revoke one of the caller's sessions.
#[utoipa::path(delete, path = "/auth/sessions/{id}", tag = "auth",
    params(("id" = Snowflake, Path, description = "Session id")), responses(
    (status = 204, description = "Revoked"), (status = 404, description = "No such live session of yours", body = ErrorBody)))]
pub async fn revoke_session(
    State(s): State<AppState>,
    auth: Auth,
    Path(id): Path<Snowflake>,
) -> ApiResult<StatusCode> {
    s.core.revoke_session(auth.caller(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
