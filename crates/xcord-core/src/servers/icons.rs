//! Server icons: decoded, checked and stored as images.

use xcord_types::Snowflake;

use crate::error::Upload;
use crate::{Core, Error, Result};

impl Core {
    /// Stores a base64 (or data URL) icon as an image under `/cdn/icons/…`.
    pub(super) async fn store_icon(&self, owner: Snowflake, data: &str) -> Result<String> {
        use base64::Engine as _;
        let b64 = data.split_once("base64,").map_or(data, |(_, b)| b).trim();
        if b64.len() > 8 * 1024 * 1024 {
            return Err(Error::TooLarge {
                upload: Upload::ServerIcon,
                limit_bytes: crate::media::MAX_PROFILE_IMAGE_BYTES,
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| {
                Error::invalid("icon", "base64", "must be a base64 image or a data URL")
            })?;
        let img = crate::media::check_image(bytes, crate::media::MAX_PROFILE_IMAGE_BYTES).await?;
        let key = crate::media::store_image(
            self.files.as_ref(),
            crate::media::ImageUse::ServerIcon,
            owner,
            &img,
        )
        .await
        .map_err(Error::Internal)?;
        Ok(Self::cdn_url(&key))
    }
}
