//! Outgoing mail: SMTP when `XCORD_SMTP_URL` is set, otherwise `.eml` files in the outbox
//! folder of the data directory (the embedded default).

use std::path::PathBuf;

use anyhow::Context as _;
use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport as _, Message, Tokio1Executor};

/// One plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Recipient address.
    pub to: String,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
}

/// Sends mail.
#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Delivers `mail` (to the SMTP server, or to the outbox).
    async fn send(&self, mail: &Mail) -> anyhow::Result<()>;
}

fn build(from: &Mailbox, mail: &Mail) -> anyhow::Result<Message> {
    let to: Mailbox = mail
        .to
        .parse()
        .with_context(|| format!("bad recipient {:?}", mail.to))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject.clone())
        .body(mail.text.clone())
        .context("building the message")
}

/// Writes each message as an `.eml` file; a file appears whole (written aside, then renamed).
#[derive(Debug)]
pub struct OutboxMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl OutboxMailer {
    /// Mail from `from` into `dir` (created when missing).
    pub fn new(dir: PathBuf, from: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the outbox {}", dir.display()))?;
        Ok(Self {
            dir,
            from: from
                .parse()
                .with_context(|| format!("bad sender address {from:?}"))?,
        })
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        let bytes = build(&self.from, mail)?.formatted();
        let name = format!(
            "{}-{}",
            xcord_types::Timestamp::now().as_millis(),
            crate::crypto::random_token(6)
        );
        crate::storage::write_file_atomically(&self.dir.join(format!("{name}.eml")), &bytes)
            .await?;
        Ok(())
    }
}

/// Sends through an SMTP server (`smtp://host:port`, `smtps://…` for TLS).
#[derive(Debug)]
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// A mailer for `url`, sending as `from`.
    pub fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .with_context(|| format!("bad SMTP URL {url:?}"))?
            .build();
        Ok(Self {
            transport,
            from: from
                .parse()
                .with_context(|| format!("bad sender address {from:?}"))?,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        let msg = build(&self.from, mail)?;
        self.transport.send(msg).await.context("SMTP delivery")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outbox_files_are_complete_messages() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let m = OutboxMailer::new(dir.path().join("outbox"), "xcord <no-reply@xcord.local>")?;
        m.send(&Mail {
            to: "ann@example.com".into(),
            subject: "Hi".into(),
            text: "token: abc".into(),
        })
        .await?;
        let files: Vec<_> =
            std::fs::read_dir(dir.path().join("outbox"))?.collect::<Result<_, _>>()?;
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].path())?;
        assert!(text.contains("To: ann@example.com"), "{text}");
        assert!(text.contains("Subject: Hi"));
        assert!(text.contains("token: abc"));
        assert!(
            m.send(&Mail {
                to: "not an address".into(),
                subject: "x".into(),
                text: "y".into()
            })
            .await
            .is_err()
        );
        Ok(())
    }
}
