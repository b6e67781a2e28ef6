//! The pages behind the links in the account e-mails (SPEC §3 Auth): a person who clicks
//! the link in the actual mail lands on a page that does the job, through a plain form.

use reqwest::header::CONTENT_TYPE;
use xcord_testkit::{Backend, TestApp, TestAppBuilder, TestResponse, on_both_backends};

on_both_backends!(
    the_verification_link_in_the_mail_verifies_the_address,
    the_reset_link_in_the_mail_sets_a_new_password,
);

const PUBLIC_URL: &str = "https://chat.example.org";

fn app_with_public_url(backend: Backend) -> TestAppBuilder {
    // The mails carry XCORD_PUBLIC_URL; the test maps that origin to the test server.
    TestAppBuilder::new(backend).configure(|c| c.public_url = Some(PUBLIC_URL.into()))
}

/// The path and query of the link in `mail` that starts with the public URL + `path`.
/// Quoted-printable soft breaks and `=3D` are undone first, as a mail client would.
fn link_in_mail(mail: &str, path: &str) -> String {
    let decoded = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let prefix = format!("{PUBLIC_URL}{path}");
    let at = decoded
        .find(&prefix)
        .unwrap_or_else(|| panic!("no {prefix} link in {decoded}"));
    decoded[at + PUBLIC_URL.len()..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect()
}

async fn open(app: &TestApp, path: &str) -> TestResponse {
    TestApp::read(app.client.get(app.url(path)).send().await.expect("GET")).await
}

/// Sends `fields` as a browser sends a form: to the page's own address.
async fn submit(app: &TestApp, path: &str, fields: &[(&str, &str)]) -> TestResponse {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect();
    TestApp::read(
        app.client
            .post(app.url(path))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body.join("&"))
            .send()
            .await
            .expect("POST"),
    )
    .await
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// The `value` of the hidden input `name` in a page.
fn hidden_value(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden {name} in {html}"))
        + marker.len();
    html[at..].chars().take_while(|c| *c != '"').collect()
}

fn assert_page(res: &TestResponse, status: u16, needle: &str) {
    assert_eq!(res.status, status, "{}", res.text);
    assert_eq!(
        res.header("content-type"),
        Some("text/html; charset=utf-8"),
        "{}",
        res.text
    );
    let csp = res.header("content-security-policy").unwrap_or_default();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("form-action 'self'"), "{csp}");
    assert_eq!(res.header("cache-control"), Some("no-store"));
    assert!(!res.text.contains("<script"), "{}", res.text);
    assert!(res.text.contains(needle), "no {needle:?} in {}", res.text);
}

async fn the_verification_link_in_the_mail_verifies_the_address(backend: Backend) {
    let app = app_with_public_url(backend).spawn().await;
    let user = app.register("clicker").await;
    let mail = app
        .wait_for_mail("clicker@example.com", "verification token")
        .await;
    let link = link_in_mail(&mail, "/verify-email?token=");

    // Opening the link (as a mail scanner would) spends nothing: it offers one button.
    let landing = open(&app, &link).await;
    assert_page(&landing, 200, "<form method=\"post\">");
    assert!(landing.text.contains("<button type=\"submit\">"));
    assert_eq!(
        app.get_as(&user.token, "/users/@me").await.body["emailVerified"],
        false
    );
    let token = hidden_value(&landing.text, "token");

    let done = submit(&app, &link, &[("token", &token)]).await;
    assert_page(&done, 200, "Your e-mail address is verified");
    assert_eq!(
        app.get_as(&user.token, "/users/@me").await.body["emailVerified"],
        true
    );

    // The link is single-use; a mangled or missing token is a 400 page, never JSON.
    assert_page(
        &submit(&app, &link, &[("token", &token)]).await,
        400,
        "no longer works",
    );
    assert_page(&open(&app, "/verify-email").await, 400, "incomplete");
    assert_page(&open(&app, "/verify-email?token=").await, 400, "incomplete");
    let hostile = open(
        &app,
        "/verify-email?token=%22%3E%3Cscript%3Ealert(1)%3C/script%3E",
    )
    .await;
    assert_page(
        &hostile,
        200,
        "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;",
    );
    assert_page(
        &submit(&app, "/verify-email", &[("token", "\"><b>x</b>")]).await,
        400,
        "no longer works",
    );
    // Something that is not a form is refused as a page too.
    let json = TestApp::read(
        app.client
            .post(app.url("/verify-email"))
            .json(&serde_json::json!({"token": token}))
            .send()
            .await
            .expect("POST"),
    )
    .await;
    assert_page(&json, 415, "could not be read");
}

async fn the_reset_link_in_the_mail_sets_a_new_password(backend: Backend) {
    let app = app_with_public_url(backend).spawn().await;
    let before = app.register("forgetful").await;
    let res = app
        .post_api(
            "/auth/forgot-password",
            &serde_json::json!({"email": "forgetful@example.com"}),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.text);
    let mail = app
        .wait_for_mail("forgetful@example.com", "reset token")
        .await;
    let link = link_in_mail(&mail, "/reset-password?token=");

    let form = open(&app, &link).await;
    assert_page(&form, 200, "type=\"password\" name=\"newPassword\"");
    assert!(form.text.contains("name=\"confirmPassword\""));
    let token = hidden_value(&form.text, "token");

    // Mistakes bring the form back with the reason, and change nothing.
    let differ = submit(
        &app,
        &link,
        &[
            ("token", &token),
            ("newPassword", "Brand-New9"),
            ("confirmPassword", "Brand-New8"),
        ],
    )
    .await;
    assert_page(&differ, 422, "The two passwords differ");
    assert_eq!(hidden_value(&differ.text, "token"), token);
    let weak = submit(
        &app,
        &link,
        &[
            ("token", &token),
            ("newPassword", "weak"),
            ("confirmPassword", "weak"),
        ],
    )
    .await;
    assert_page(&weak, 422, "That password cannot be used");
    app.login("forgetful", "Secret123").await;

    let done = submit(
        &app,
        &link,
        &[
            ("token", &token),
            ("newPassword", "Brand New 9 & <ok>"),
            ("confirmPassword", "Brand New 9 & <ok>"),
        ],
    )
    .await;
    assert_page(&done, 200, "Your password is changed");
    app.login("forgetful", "Brand New 9 & <ok>").await;
    app.post_api(
        "/auth/login",
        &serde_json::json!({"username": "forgetful", "password": "Secret123"}),
    )
    .await
    .assert_error(401, "Unauthorized");
    // Every earlier session was signed out.
    app.get_as(&before.token, "/users/@me")
        .await
        .assert_error(401, "Unauthorized");

    // Spent, missing and made-up tokens.
    let again = submit(
        &app,
        &link,
        &[
            ("token", &token),
            ("newPassword", "Another-Pass1"),
            ("confirmPassword", "Another-Pass1"),
        ],
    )
    .await;
    assert_page(&again, 400, "no longer works");
    assert_page(&open(&app, "/reset-password").await, 400, "incomplete");
    assert_page(
        &submit(
            &app,
            "/reset-password",
            &[
                ("token", "made-up"),
                ("newPassword", "Another-Pass1"),
                ("confirmPassword", "Another-Pass1"),
            ],
        )
        .await,
        400,
        "no longer works",
    );
    assert_page(
        &submit(&app, "/reset-password", &[("token", "only")]).await,
        400,
        "could not be read",
    );
}
