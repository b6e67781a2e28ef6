//! Real mail over SMTP: the test starts an SMTP server process (Python's aiosmtpd) and
//! xcord delivers to it with `XCORD_SMTP_URL`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use xcord_testkit::{Backend, TestAppBuilder, token_in_mail};

struct SmtpSink {
    child: Child,
    maildir: tempfile::TempDir,
    port: u16,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// Starts `python3 -m aiosmtpd` writing into a Maildir; fails (never skips) without it.
async fn smtp_sink() -> SmtpSink {
    let maildir = tempfile::tempdir().expect("maildir");
    let port = free_port();
    let child = Command::new("python3")
        .args([
            "-m",
            "aiosmtpd",
            "-n",
            "-l",
            &format!("127.0.0.1:{port}"),
            "-c",
            "aiosmtpd.handlers.Mailbox",
        ])
        .arg(maildir.path().join("Maildir"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be installed (with aiosmtpd from PyPI; ./scripts/test installs it)");
    let mut sink = SmtpSink {
        child,
        maildir,
        port,
    };
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return sink;
        }
        if let Ok(Some(status)) = sink.child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = sink.child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!(
                "aiosmtpd exited ({status}): {err}\n./scripts/test installs it (or: pip install aiosmtpd)"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("aiosmtpd did not start listening on {port}");
}

fn delivered(sink: &SmtpSink) -> Vec<String> {
    let new = sink.maildir.path().join("Maildir").join("new");
    // The sink creates the folder with its first mail; until then nothing was delivered.
    let entries = match std::fs::read_dir(&new) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot list {}: {e}", new.display()),
    };
    entries
        .map(|e| {
            let path = e
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", new.display()))
                .path();
            std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        })
        .collect()
}

#[tokio::test]
async fn verification_and_reset_mail_go_through_a_real_smtp_server() {
    let sink = smtp_sink().await;
    let url = format!("smtp://127.0.0.1:{}", sink.port);
    let app = TestAppBuilder::new(Backend::Sqlite)
        .configure(move |c| c.smtp_url = Some(url))
        .spawn()
        .await;
    let u = app.register("postie").await;
    let mut mails = Vec::new();
    for _ in 0..100 {
        mails = delivered(&sink);
        if !mails.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mail = mails
        .iter()
        .find(|m| m.contains("postie@example.com"))
        .unwrap_or_else(|| panic!("no mail delivered: {mails:#?}"));
    assert!(
        mail.contains("Subject: Verify your xcord e-mail address"),
        "{mail}"
    );
    assert!(
        app.outbox().is_empty(),
        "with SMTP configured nothing goes to the outbox"
    );
    let token = token_in_mail(mail, "verification token:");
    assert_eq!(
        app.post_api("/auth/verify-email", &json!({"token": token}))
            .await
            .status,
        200
    );
    assert_eq!(
        app.get_as(&u.token, "/users/@me").await.body["emailVerified"],
        true
    );

    app.post_api(
        "/auth/forgot-password",
        &json!({"email": "postie@example.com"}),
    )
    .await;
    let mut reset = None;
    for _ in 0..100 {
        reset = delivered(&sink)
            .into_iter()
            .find(|m| m.contains("reset token:"));
        if reset.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let token = token_in_mail(&reset.expect("reset mail"), "reset token:");
    assert_eq!(
        app.post_api(
            "/auth/reset-password",
            &json!({"token": token, "newPassword": "ViaSmtp123"})
        )
        .await
        .status,
        200
    );
    app.login("postie", "ViaSmtp123").await;
}

#[tokio::test]
async fn an_unreachable_smtp_server_does_not_break_registration() {
    let url = format!("smtp://127.0.0.1:{}", free_port());
    let app = TestAppBuilder::new(Backend::Sqlite)
        .configure(move |c| c.smtp_url = Some(url))
        .spawn()
        .await;
    // Mail leaves in the background; the account exists whatever the mail server does.
    let u = app.register("offline_mail").await;
    assert_eq!(app.get_as(&u.token, "/users/@me").await.status, 200);
}
