//! Uploaded images (avatars, banners, server icons): size-checked, sniffed, fully decoded,
//! then stored by content hash in the public space of the [`FileStore`].

use std::path::Path;

use image::ImageFormat;
use sha2::{Digest, Sha256};

use crate::storage::{FileSpace, FileStore, StoredFile, is_valid_key};
use crate::{Core, Error, Result, Upload};

/// Largest accepted profile image (SPEC: 5 MB).
pub const MAX_PROFILE_IMAGE_BYTES: usize = 5 * 1024 * 1024;
/// Largest accepted image side, in pixels.
const MAX_SIDE: u32 = 8192;

/// A checked image ready to store.
#[derive(Debug, Clone)]
pub struct CheckedImage {
    /// `png`, `jpg`, `gif` or `webp`.
    pub extension: &'static str,
    /// The bytes as uploaded.
    pub bytes: Vec<u8>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// The formats profile images may have, from their leading bytes (never the client's word).
pub fn sniff(bytes: &[u8]) -> Option<(ImageFormat, &'static str)> {
    match image::guess_format(bytes).ok()? {
        ImageFormat::Png => Some((ImageFormat::Png, "png")),
        ImageFormat::Jpeg => Some((ImageFormat::Jpeg, "jpg")),
        ImageFormat::Gif => Some((ImageFormat::Gif, "gif")),
        ImageFormat::WebP => Some((ImageFormat::WebP, "webp")),
        _ => None,
    }
}

/// Checks an upload: too large over `max_bytes`, an unsupported format when not
/// PNG/JPEG/GIF/WebP, a validation failure when it
/// claims a format but does not decode (a forged or truncated file). Decoding runs on the
/// blocking pool with size limits, so a hostile file cannot exhaust memory.
pub async fn check_image(bytes: Vec<u8>, max_bytes: usize) -> Result<CheckedImage> {
    if bytes.len() > max_bytes {
        return Err(Error::TooLarge {
            upload: Upload::Image,
            limit_bytes: max_bytes,
        });
    }
    let Some((format, extension)) = sniff(&bytes) else {
        return Err(Error::UnsupportedFormat {
            upload: Upload::Image,
        });
    };
    let decoded = tokio::task::spawn_blocking(move || {
        let mut reader = image::ImageReader::with_format(std::io::Cursor::new(&bytes[..]), format);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(MAX_SIDE);
        limits.max_image_height = Some(MAX_SIDE);
        limits.max_alloc = Some(512 * 1024 * 1024);
        reader.limits(limits);
        let img = reader.decode();
        (img.map(|i| (i.width(), i.height())), bytes)
    })
    .await
    .map_err(|e| Error::Internal(anyhow::anyhow!("image decoding task: {e}")))?;
    match decoded {
        (Ok((width, height)), bytes) => Ok(CheckedImage {
            extension,
            bytes,
            width,
            height,
        }),
        (Err(_), _) => Err(Error::invalid(
            "file",
            "image",
            "the file is not a valid image",
        )),
    }
}

/// What a public image is of; the first segment of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageUse {
    /// A user's avatar.
    Avatar,
    /// A user's banner.
    Banner,
    /// A server's icon or banner.
    ServerIcon,
}

impl ImageUse {
    fn folder(self) -> &'static str {
        match self {
            ImageUse::Avatar => "avatars",
            ImageUse::Banner => "banners",
            ImageUse::ServerIcon => "icons",
        }
    }
}

/// The key of `img` as `usage` of `owner`: `<folder>/<owner>/<hash>.<ext>`, the hash being
/// the first 16 bytes of the SHA-256 of the bytes, so one image is stored once per owner
/// and its URL can be cached for ever.
fn image_key(usage: ImageUse, owner: xcord_types::Snowflake, img: &CheckedImage) -> String {
    let hash = hex::encode(&Sha256::digest(&img.bytes)[..16]);
    format!("{}/{owner}/{hash}.{}", usage.folder(), img.extension)
}

/// Stores `img` in the public space and returns its key.
pub async fn store_image(
    files: &dyn FileStore,
    usage: ImageUse,
    owner: xcord_types::Snowflake,
    img: &CheckedImage,
) -> anyhow::Result<String> {
    let key = image_key(usage, owner, img);
    files.put(FileSpace::Public, &key, &img.bytes).await?;
    Ok(key)
}

impl Core {
    /// Opens the public file `key` (`/cdn/<key>`); `None` when there is none, or when the
    /// key could not name a stored file at all.
    pub async fn open_public_file(&self, key: &str) -> Result<Option<StoredFile>> {
        if !is_valid_key(key) {
            return Ok(None);
        }
        self.files
            .open(FileSpace::Public, key)
            .await
            .map_err(Error::Internal)
    }
}

/// The content type of a stored image by its extension.
pub fn content_type_for(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([10, 200, 30]));
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut out, ImageFormat::Png)
            .expect("encode a PNG");
        out.into_inner()
    }

    #[tokio::test]
    async fn real_images_pass_and_forgeries_fail() {
        let ok = check_image(png(3, 2), MAX_PROFILE_IMAGE_BYTES)
            .await
            .expect("png");
        assert_eq!((ok.extension, ok.width, ok.height), ("png", 3, 2));
        let mut truncated = png(64, 64);
        truncated.truncate(60);
        assert!(matches!(
            check_image(truncated, MAX_PROFILE_IMAGE_BYTES).await,
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            check_image(b"GIF89a-but-not-really".to_vec(), MAX_PROFILE_IMAGE_BYTES).await,
            Err(Error::Validation(_))
        ));
        assert!(matches!(
            check_image(b"%PDF-1.7".to_vec(), MAX_PROFILE_IMAGE_BYTES).await,
            Err(Error::UnsupportedFormat {
                upload: Upload::Image
            })
        ));
        assert!(matches!(
            check_image(png(3, 2), 10).await,
            Err(Error::TooLarge {
                upload: Upload::Image,
                ..
            })
        ));
    }
}
