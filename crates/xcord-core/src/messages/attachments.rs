//! Attachments: upload, signed URLs, opening, and removing the files of deleted channels.

use hmac::Mac as _;
use xcord_permissions::bits;
use xcord_store::AttachmentRecord;
use xcord_types::Snowflake;
use xcord_types::rest::messages::Attachment;

use crate::error::{Denial, Entity, Scope, Upload};
use crate::servers::require_bits;
use crate::storage::{FileSpace, sanitize_filename, sniff_content_type};
use crate::{Caller, Core, Error, Result};

/// How long a signed attachment URL works.
const SIGNED_URL_TTL_SECS: i64 = 24 * 3600;

/// An attachment list that is not the author's unused uploads to the channel.
pub(super) fn bad_attachments() -> Error {
    Error::invalid(
        "attachmentIds",
        "owned",
        "must be your own unused uploads to this channel",
    )
}

impl Core {
    /// A signed, expiring URL for an attachment.
    pub fn signed_attachment_url(&self, a: &AttachmentRecord) -> String {
        let expires = self.clock.now().as_millis() / 1000 + SIGNED_URL_TTL_SECS;
        let sig = self.attachment_signature(a.id, expires);
        format!(
            "/cdn/attachments/{}/{}?ex={expires:x}&sig={sig}",
            a.id, a.filename
        )
    }

    fn attachment_signature(&self, id: Snowflake, expires: i64) -> String {
        let mut mac = self.cdn_mac.clone();
        mac.update(format!("{id}:{expires}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks an attachment URL's signature and expiry; denied when either is wrong.
    pub async fn verify_attachment_url(
        &self,
        id: Snowflake,
        ex_hex: &str,
        sig: &str,
    ) -> Result<AttachmentRecord> {
        let forbidden = || Error::Denied(Denial::InvalidSignedLink);
        let expires = i64::from_str_radix(ex_hex, 16).map_err(|_| forbidden())?;
        let want = self.attachment_signature(id, expires);
        // Constant-time comparison through the MAC library would need the raw tag; the
        // signature is public-length hex, so compare without early exit.
        let same = want.len() == sig.len()
            && want
                .bytes()
                .zip(sig.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if !same || expires * 1000 <= self.clock.now().as_millis() {
            return Err(forbidden());
        }
        let a = self
            .store
            .attachment(id)
            .await?
            .ok_or(Error::NotFound(Entity::Attachment))?;
        Ok(a)
    }

    /// Storage keys of these channels' attachments (read before the rows go).
    pub(crate) async fn attachment_files_of(&self, channels: &[Snowflake]) -> Result<Vec<String>> {
        Ok(self.store.attachment_keys(channels).await?)
    }

    /// Deletes stored files by key, in the background, once their rows are gone (a failure is
    /// logged; the files are unreachable either way).
    pub(crate) fn delete_files_later(&self, keys: Vec<String>) {
        if keys.is_empty() {
            return;
        }
        let files = self.files.clone();
        self.spawn_background(async move {
            for key in keys {
                if let Err(e) = files.delete(FileSpace::Attachments, &key).await {
                    tracing::warn!(error = format!("{e:#}"), "attachment file not removed");
                }
            }
        });
    }

    /// Opens an attachment's bytes.
    pub async fn open_attachment(
        &self,
        a: &AttachmentRecord,
    ) -> Result<Option<crate::storage::StoredFile>> {
        self.files
            .open(FileSpace::Attachments, &a.storage_key)
            .await
            .map_err(Error::Internal)
    }

    /// `POST /channels/{id}/attachments`: stores an upload for a later message.
    pub async fn upload_attachment(
        &self,
        caller: &Caller,
        channel_id: Snowflake,
        filename: &str,
        bytes: Vec<u8>,
    ) -> Result<Attachment> {
        let ctx = self.channel_context(caller, channel_id).await?;
        require_bits(
            ctx.perms,
            bits::SEND_MESSAGES | bits::ATTACH_FILES,
            Scope::Channel(ctx.channel.id),
        )?;
        if bytes.is_empty() {
            return Err(Error::invalid("file", "required", "the file is empty"));
        }
        if bytes.len() > self.settings.attachment_max_bytes {
            return Err(Error::TooLarge {
                upload: Upload::Attachment,
                limit_bytes: self.settings.attachment_max_bytes,
            });
        }
        let content_type = sniff_content_type(&bytes);
        let (width, height) = match crate::media::sniff(&bytes) {
            Some((format, _)) => {
                let dims = image::ImageReader::with_format(std::io::Cursor::new(&bytes), format)
                    .into_dimensions()
                    .ok();
                (dims.map(|d| i64::from(d.0)), dims.map(|d| i64::from(d.1)))
            }
            None => (None, None),
        };
        let id = self.ids.next_id();
        let filename = sanitize_filename(filename);
        let key = format!("{channel_id}/{id}");
        self.files
            .put(FileSpace::Attachments, &key, &bytes)
            .await
            .map_err(Error::Internal)?;
        let rec = AttachmentRecord {
            id,
            uploader_id: caller.user_id,
            channel_id,
            message_id: None,
            filename,
            content_type: content_type.to_owned(),
            size: bytes.len() as i64,
            width,
            height,
            storage_key: key,
            created_at: self.clock.now(),
        };
        self.store.create_attachment(&rec).await?;
        Ok(self.attachment_wire(&rec))
    }
}
