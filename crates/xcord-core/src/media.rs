//! Uploaded images (avatars, banners): size-checked, sniffed, fully decoded, then stored by
//! content hash under the data directory's `cdn` folder.

use std::path::{Path, PathBuf};

use image::ImageFormat;
use sha2::{Digest, Sha256};

use crate::Error;

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

/// Checks an upload: 413 when over `max_bytes`, 415 when not PNG/JPEG/GIF/WebP, 422 when it
/// claims a format but does not decode (a forged or truncated file). Decoding runs on the
/// blocking pool with size limits, so a hostile file cannot exhaust memory.
pub async fn check_image(bytes: Vec<u8>, max_bytes: usize) -> Result<CheckedImage, Error> {
    if bytes.len() > max_bytes {
        return Err(Error::PayloadTooLarge(format!(
            "The image is larger than {} MB.",
            max_bytes / (1024 * 1024)
        )));
    }
    let Some((format, extension)) = sniff(&bytes) else {
        return Err(Error::UnsupportedMediaType(
            "Images must be PNG, JPEG, GIF or WebP.".into(),
        ));
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

/// Stores `img` under `root/<kind>/<owner>/<hash>.<ext>` and returns the key after `root`.
pub async fn store_image(
    root: &Path,
    kind: &str,
    owner: &str,
    img: &CheckedImage,
) -> anyhow::Result<String> {
    let hash = hex::encode(&Sha256::digest(&img.bytes)[..16]);
    let key = format!("{kind}/{owner}/{hash}.{}", img.extension);
    crate::storage::write_file_atomically(&root.join(&key), &img.bytes).await?;
    Ok(key)
}

/// Resolves a `/cdn/` key to a file under `root`, refusing anything that could leave it.
pub fn resolve_cdn_path(root: &Path, key: &str) -> Option<PathBuf> {
    let segments: Vec<&str> = key.split('/').collect();
    let sane = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    if segments.is_empty() || segments.len() > 4 || !segments.iter().all(|s| sane(s)) {
        return None;
    }
    Some(segments.iter().fold(root.to_path_buf(), |p, s| p.join(s)))
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
            .map(|()| out.into_inner())
            .unwrap_or_default()
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
            Err(Error::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            check_image(png(3, 2), 10).await,
            Err(Error::PayloadTooLarge(_))
        ));
    }

    #[test]
    fn cdn_paths_cannot_escape() {
        let root = Path::new("/srv/cdn");
        assert_eq!(
            resolve_cdn_path(root, "avatars/1/ab.png"),
            Some(PathBuf::from("/srv/cdn/avatars/1/ab.png"))
        );
        for bad in [
            "../etc/passwd",
            "avatars/../../x",
            "avatars//x",
            ".hidden",
            "a/b/c/d/e",
            "a\\b",
            "",
            "avatars/1/%2e%2e",
        ] {
            assert_eq!(resolve_cdn_path(root, bad), None, "{bad}");
        }
    }
}
