//! The two pages the account e-mails link to (`XCORD_PUBLIC_URL` + `/verify-email?token=…`
//! and `/reset-password?token=…`). Plain server-rendered HTML with forms that post back to
//! the same address: no script, no style, no external resource, so the strictest CSP holds.
//!
//! Opening a link never spends its token: mail scanners and link previews fetch links, and
//! a GET that verified (or a reset form that consumed the token on display) would use up
//! the person's link before they click. The page asks for one click (verify) or the new
//! password (reset), and the POST does the job through the same use-cases as the JSON API.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use xcord_core::Error as CoreError;

use crate::AppState;

/// Nothing may load; forms may only post back to this server.
pub const PAGE_CSP: &str =
    "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page; `title` is text, `body` is already-escaped HTML.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n<title>{title} · xcord</title>\n</head>\n\
         <body>\n<main>\n<h1>{title}</h1>\n{body}</main>\n</body>\n</html>\n",
        title = escape(title),
    );
    let mut res = (status, html).into_response();
    let h = res.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(PAGE_CSP));
    // The address carries a one-time token: keep it out of caches.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn paragraph(text: &str) -> String {
    format!("<p>{}</p>\n", escape(text))
}

/// The token from `?token=`, when there is a non-empty one.
fn query_token(uri: &Uri) -> Option<String> {
    form_urlencoded::parse(uri.query()?.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn incomplete_link() -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "This link is incomplete",
        &paragraph(
            "The address has no token. Open the link from the e-mail again, or copy the whole \
             address into the browser.",
        ),
    )
}

/// Why a posted form could not be used.
#[derive(Debug)]
enum FormProblem {
    /// Not `application/x-www-form-urlencoded`.
    NotAForm,
    /// A field is missing or the encoding is broken.
    Unreadable,
}

impl IntoResponse for FormProblem {
    fn into_response(self) -> Response {
        match self {
            FormProblem::NotAForm => page(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "This form could not be read",
                &paragraph("Send the form from the page itself."),
            ),
            FormProblem::Unreadable => page(
                StatusCode::BAD_REQUEST,
                "This form could not be read",
                &paragraph("Open the link from the e-mail again and send the form from there."),
            ),
        }
    }
}

/// The fields of a form post.
fn read_form<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<T, FormProblem> {
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(FormProblem::NotAForm);
    }
    serde_urlencoded::from_bytes(body).map_err(|_| FormProblem::Unreadable)
}

/// The page for a use-case that failed for a reason other than the person's input.
fn failure_page(e: CoreError) -> Response {
    match e {
        CoreError::RateLimited { .. } => page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &paragraph("Wait a little and try again."),
        ),
        CoreError::Unavailable(e) => {
            tracing::warn!(error = format!("{e:#}"), "dependency unavailable");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Please try again shortly",
                &paragraph("The service is temporarily unavailable. Your link still works."),
            )
        }
        e => {
            tracing::error!(error = format!("{e:#}"), "account page failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                &paragraph("An internal error occurred. Your link may still work; try again."),
            )
        }
    }
}

/// `GET /verify-email?token=…`: a button that confirms the address.
pub async fn verify_email_page(uri: Uri) -> Response {
    let Some(token) = query_token(&uri) else {
        return incomplete_link();
    };
    page(
        StatusCode::OK,
        "Confirm your e-mail address",
        &format!(
            "{}<form method=\"post\">\n<input type=\"hidden\" name=\"token\" value=\"{}\">\n\
             <button type=\"submit\">Verify my e-mail address</button>\n</form>\n",
            paragraph("One click confirms that this address belongs to your xcord account."),
            escape(&token),
        ),
    )
}

#[derive(Debug, Deserialize)]
struct VerifyForm {
    token: String,
}

/// `POST /verify-email` (the page's form): verifies and shows the outcome.
pub async fn verify_email_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: VerifyForm = match read_form(&headers, &body) {
        Ok(f) => f,
        Err(problem) => return problem.into_response(),
    };
    match s.core.verify_email(form.token.trim()).await {
        Ok(_) => page(
            StatusCode::OK,
            "Your e-mail address is verified",
            &paragraph("Thank you. You can close this page and sign in."),
        ),
        Err(CoreError::Refused(_) | CoreError::NotFound(_)) => page(
            StatusCode::BAD_REQUEST,
            "This link no longer works",
            &paragraph(
                "The verification link is invalid, was already used, or has expired. Signed \
                 in, you can ask for a new one (POST /api/v1/auth/resend-verification).",
            ),
        ),
        Err(e) => failure_page(e),
    }
}

/// The reset form, with `problem` (already a sentence) above it when the last try failed.
fn reset_form(status: StatusCode, token: &str, problem: Option<&str>) -> Response {
    let problem = problem.map(paragraph).unwrap_or_default();
    page(
        status,
        "Choose a new password",
        &format!(
            "{problem}{}<form method=\"post\">\n<input type=\"hidden\" name=\"token\" value=\"{}\">\n\
             <p><label>New password<br>\n<input type=\"password\" name=\"newPassword\" \
             autocomplete=\"new-password\" minlength=\"8\" maxlength=\"128\" required></label></p>\n\
             <p><label>Repeat it<br>\n<input type=\"password\" name=\"confirmPassword\" \
             autocomplete=\"new-password\" minlength=\"8\" maxlength=\"128\" required></label></p>\n\
             <button type=\"submit\">Change my password</button>\n</form>\n",
            paragraph(
                "8 to 128 characters, with an upper-case letter, a lower-case letter and a \
                 digit. Every signed-in device will be signed out.",
            ),
            escape(token),
        ),
    )
}

/// `GET /reset-password?token=…`: the form for the new password.
pub async fn reset_password_page(uri: Uri) -> Response {
    match query_token(&uri) {
        Some(token) => reset_form(StatusCode::OK, &token, None),
        None => incomplete_link(),
    }
}

#[derive(Debug, Deserialize)]
struct ResetForm {
    token: String,
    #[serde(rename = "newPassword")]
    new_password: String,
    #[serde(rename = "confirmPassword")]
    confirm_password: String,
}

/// `POST /reset-password` (the page's form): sets the password and shows the outcome.
pub async fn reset_password_submit(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: ResetForm = match read_form(&headers, &body) {
        Ok(f) => f,
        Err(problem) => return problem.into_response(),
    };
    let token = form.token.trim();
    if form.new_password != form.confirm_password {
        return reset_form(
            StatusCode::UNPROCESSABLE_ENTITY,
            token,
            Some("The two passwords differ. Type the same password twice."),
        );
    }
    match s.core.reset_password(token, form.new_password).await {
        Ok(_) => page(
            StatusCode::OK,
            "Your password is changed",
            &paragraph(
                "Every device that was signed in has been signed out. Sign in with the new \
                 password.",
            ),
        ),
        Err(CoreError::Validation(fields)) => {
            let why: Vec<&str> = fields.iter().map(|f| f.message.as_str()).collect();
            reset_form(
                StatusCode::UNPROCESSABLE_ENTITY,
                token,
                Some(&format!("That password cannot be used: {}", why.join(" "))),
            )
        }
        Err(CoreError::Refused(_) | CoreError::NotFound(_)) => page(
            StatusCode::BAD_REQUEST,
            "This link no longer works",
            &paragraph(
                "The reset link is invalid, was already used, or has expired (links last one \
                 hour). Ask for a new one (POST /api/v1/auth/forgot-password).",
            ),
        ),
        Err(e) => failure_page(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_attribute_quotes() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
