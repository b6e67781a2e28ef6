//! Where uploaded files live. Local disk under the data directory by default; the trait lets
//! an S3-compatible store take its place.

use std::path::PathBuf;

use anyhow::Context as _;
use async_trait::async_trait;

/// A stored file opened for reading.
pub struct StoredFile {
    /// The open file.
    pub file: tokio::fs::File,
    /// Its length in bytes.
    pub len: u64,
}

/// Byte storage for uploads, addressed by key.
#[async_trait]
pub trait FileStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` under `key` (whole or not at all).
    async fn put(&self, key: &str, bytes: &[u8]) -> anyhow::Result<()>;
    /// Opens `key`; `None` when there is no such file.
    async fn open(&self, key: &str) -> anyhow::Result<Option<StoredFile>>;
    /// Removes `key`; a missing file is not an error.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
}

/// Writes `bytes` to `path` so that the file appears whole or not at all: into a hidden
/// sibling first, then renamed (creating the directory when missing).
pub async fn write_file_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.part"));
    tokio::fs::write(&tmp, bytes)
        .await
        .with_context(|| format!("writing {}", tmp.display()))?;
    tokio::fs::rename(&tmp, path)
        .await
        .with_context(|| format!("moving {}", path.display()))?;
    Ok(())
}

/// Files under a directory.
#[derive(Debug, Clone)]
pub struct LocalFileStore {
    root: PathBuf,
}

impl LocalFileStore {
    /// Files under `root`.
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        crate::media::resolve_cdn_path(&self.root, key)
            .ok_or_else(|| anyhow::anyhow!("bad storage key {key:?}"))
    }
}

#[async_trait]
impl FileStore for LocalFileStore {
    async fn put(&self, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
        write_file_atomically(&self.path(key)?, bytes).await
    }

    async fn open(&self, key: &str) -> anyhow::Result<Option<StoredFile>> {
        let path = self.path(key)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) => {
                let len = file.metadata().await?.len();
                Ok(Some(StoredFile { file, len }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
        }
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
}

/// The content type of an upload judged by its first bytes, never by the client's word.
pub fn sniff_content_type(bytes: &[u8]) -> &'static str {
    if let Some((_, ext)) = crate::media::sniff(bytes) {
        return match ext {
            "png" => "image/png",
            "jpg" => "image/jpeg",
            "gif" => "image/gif",
            _ => "image/webp",
        };
    }
    let starts = |p: &[u8]| bytes.starts_with(p);
    if starts(b"%PDF-") {
        "application/pdf"
    } else if starts(b"PK\x03\x04") {
        "application/zip"
    } else if starts(b"OggS") {
        "audio/ogg"
    } else if starts(b"ID3") || starts(&[0xFF, 0xFB]) {
        "audio/mpeg"
    } else if starts(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
        "audio/wav"
    } else if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        "video/webm"
    } else if bytes.get(4..8) == Some(b"ftyp") {
        "video/mp4"
    } else if !bytes.contains(&0) && std::str::from_utf8(&bytes[..bytes.len().min(4096)]).is_ok() {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

/// A file name safe to store and to put in a header: no paths, no control or odd characters.
pub fn sanitize_filename(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let clean: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect::<String>()
        .trim_start_matches('.')
        .chars()
        .take(100)
        .collect();
    if clean.is_empty() {
        "file".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_uses_the_bytes() {
        assert_eq!(sniff_content_type(b"%PDF-1.7 ..."), "application/pdf");
        assert_eq!(
            sniff_content_type(b"hello world"),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            sniff_content_type(&[0, 1, 2, 3, 0xff]),
            "application/octet-stream"
        );
        assert_eq!(sniff_content_type(b"\x00\x00\x00\x18ftypmp42"), "video/mp4");
    }

    #[test]
    fn filenames_are_tamed() {
        assert_eq!(sanitize_filename("../../etc/passwd"), "passwd");
        assert_eq!(
            sanitize_filename("C:\\x\\my report (1).pdf"),
            "my_report__1_.pdf"
        );
        assert_eq!(sanitize_filename(".hidden"), "hidden");
        assert_eq!(sanitize_filename(""), "file");
        assert_eq!(sanitize_filename("ünï.txt"), "_n_.txt");
    }
}
