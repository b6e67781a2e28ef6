//! Where stored files live. Every file the server keeps for its users (profile images,
//! server icons, message attachments) is written and read through [`FileStore`], so an
//! object store can replace the local disk by implementing one trait. Local disk under the
//! data directory is the default.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncSeek};

/// The spaces stored files are kept in. They differ in who may read them, which an object
/// store may want to reflect (a public bucket, a private one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileSpace {
    /// Profile images and server icons, served to anyone at `/cdn/<key>` and named by
    /// content hash: `avatars/<userId>/<hash>.<ext>`, `banners/<userId>/<hash>.<ext>`,
    /// `icons/<serverId>/<hash>.<ext>`.
    Public,
    /// Message attachments, served only through signed links: `<channelId>/<attachmentId>`.
    Attachments,
}

impl FileSpace {
    /// The folder of this space under the data directory. These are the folders earlier
    /// versions wrote to directly, so a data directory keeps working across the upgrade.
    pub const fn folder(self) -> &'static str {
        match self {
            FileSpace::Public => "cdn",
            FileSpace::Attachments => "attachments",
        }
    }
}

/// Whether `key` can name a stored file: one to four `/`-separated segments of ASCII
/// letters, digits, `.`, `_` and `-`, none empty, none starting with a dot, none longer
/// than 128 bytes. Nothing that could climb out of a folder (`..`, `\`, `%2e`) passes.
pub fn is_valid_key(key: &str) -> bool {
    let sane = |s: &str| {
        !s.is_empty()
            && s.len() <= 128
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    };
    let segments = key.split('/').count();
    (1..=4).contains(&segments) && key.split('/').all(sane)
}

/// Something a stored file is read from: its bytes in order, and a seek for byte ranges.
pub trait FileReader: AsyncRead + AsyncSeek + Send + Unpin {}

impl<T: AsyncRead + AsyncSeek + Send + Unpin> FileReader for T {}

/// A stored file opened for reading.
pub struct StoredFile {
    /// Its contents.
    pub reader: Box<dyn FileReader>,
    /// Its length in bytes.
    pub len: u64,
}

impl StoredFile {
    /// Reads the whole file into memory.
    pub async fn read_all(mut self) -> std::io::Result<Vec<u8>> {
        use tokio::io::AsyncReadExt as _;
        let mut out = Vec::with_capacity(usize::try_from(self.len).unwrap_or(0));
        self.reader.read_to_end(&mut out).await?;
        Ok(out)
    }
}

impl std::fmt::Debug for StoredFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredFile")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Byte storage for every stored file, addressed by space and key. Callers check keys
/// with [`is_valid_key`] first; an implementation refuses any other key with an error.
#[async_trait]
pub trait FileStore: Send + Sync + std::fmt::Debug {
    /// Stores `bytes` under `key` (whole or not at all), replacing what was there.
    async fn put(&self, space: FileSpace, key: &str, bytes: &[u8]) -> anyhow::Result<()>;
    /// Opens `key`; `None` when there is no such file.
    async fn open(&self, space: FileSpace, key: &str) -> anyhow::Result<Option<StoredFile>>;
    /// Removes `key`; a missing file is not an error.
    async fn delete(&self, space: FileSpace, key: &str) -> anyhow::Result<()>;
}

/// Writes `bytes` to `path` so that the file appears whole or not at all: into a hidden
/// sibling first, then renamed (creating the directory when missing).
pub async fn write_file_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
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

/// Files on local disk: `<root>/<space folder>/<key>`, with `root` the data directory.
#[derive(Debug, Clone)]
pub struct LocalFileStore {
    root: PathBuf,
}

impl LocalFileStore {
    /// Files under `root` (the data directory).
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    /// Where `key` of `space` lives on disk.
    pub fn path(&self, space: FileSpace, key: &str) -> anyhow::Result<PathBuf> {
        if !is_valid_key(key) {
            anyhow::bail!("bad storage key {key:?}");
        }
        Ok(key
            .split('/')
            .fold(self.root.join(space.folder()), |p, s| p.join(s)))
    }
}

#[async_trait]
impl FileStore for LocalFileStore {
    async fn put(&self, space: FileSpace, key: &str, bytes: &[u8]) -> anyhow::Result<()> {
        write_file_atomically(&self.path(space, key)?, bytes).await
    }

    async fn open(&self, space: FileSpace, key: &str) -> anyhow::Result<Option<StoredFile>> {
        let path = self.path(space, key)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) => {
                let meta = file
                    .metadata()
                    .await
                    .with_context(|| format!("reading {}", path.display()))?;
                // A folder is opened without error on Unix; it is not a stored file.
                if !meta.is_file() {
                    return Ok(None);
                }
                Ok(Some(StoredFile {
                    reader: Box::new(file),
                    len: meta.len(),
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("opening {}", path.display())),
        }
    }

    async fn delete(&self, space: FileSpace, key: &str) -> anyhow::Result<()> {
        let path = self.path(space, key)?;
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

    #[tokio::test]
    async fn files_keep_the_layout_of_earlier_versions() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = LocalFileStore::new(dir.path().to_path_buf());
        store
            .put(FileSpace::Public, "avatars/7/ab12.png", b"png")
            .await?;
        store.put(FileSpace::Attachments, "40/41", b"doc").await?;
        // Where the previous version wrote them itself, so nothing moves on upgrade.
        assert_eq!(
            std::fs::read(dir.path().join("cdn/avatars/7/ab12.png"))?,
            b"png"
        );
        assert_eq!(std::fs::read(dir.path().join("attachments/40/41"))?, b"doc");
        let opened = store.open(FileSpace::Public, "avatars/7/ab12.png").await?;
        assert_eq!(opened.map(|f| f.len), Some(3));
        // The spaces are apart: one key does not reach the other space's file.
        assert!(store.open(FileSpace::Public, "40/41").await?.is_none());
        store.put(FileSpace::Attachments, "40/41", b"v2").await?;
        let replaced = store.open(FileSpace::Attachments, "40/41").await?;
        match replaced {
            Some(f) => assert_eq!(f.read_all().await?, b"v2"),
            None => panic!("the replaced file is gone"),
        }
        store.delete(FileSpace::Attachments, "40/41").await?;
        store.delete(FileSpace::Attachments, "40/41").await?;
        assert!(store.open(FileSpace::Attachments, "40/41").await?.is_none());
        // A folder is not a file.
        assert!(store.open(FileSpace::Public, "avatars/7").await?.is_none());
        Ok(())
    }

    #[tokio::test]
    async fn keys_cannot_escape_their_space() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("jwt_secret"), "s")?;
        let store = LocalFileStore::new(dir.path().join("data"));
        assert!(is_valid_key("avatars/1/ab.png"));
        for bad in [
            "../jwt_secret",
            "avatars/../../x",
            "avatars//x",
            ".hidden",
            "a/b/c/d/e",
            "a\\b",
            "",
            "/abs",
            "avatars/1/%2e%2e",
        ] {
            assert!(!is_valid_key(bad), "{bad}");
            assert!(store.open(FileSpace::Public, bad).await.is_err(), "{bad}");
            assert!(
                store.put(FileSpace::Public, bad, b"x").await.is_err(),
                "{bad}"
            );
        }
        Ok(())
    }

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
