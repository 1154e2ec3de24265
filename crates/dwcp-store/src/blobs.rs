//! Content-addressed files: the artifacts, named by their SHA-256.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// SHA-256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A directory of immutable files named by the SHA-256 of their contents.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    extension: &'static str,
}

impl BlobStore {
    /// Opens (creating if needed) a blob directory whose files end in `extension`.
    pub fn open(dir: impl Into<PathBuf>, extension: &'static str) -> io::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(Self { dir, extension })
    }

    /// Where the blob with this hash lives (whether or not it exists).
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.{}", self.extension))
    }

    /// Stores `bytes` under their hash. Returns the hash and whether the blob
    /// was new (false: an identical blob was already stored).
    pub fn put(&self, bytes: &[u8]) -> io::Result<(String, bool)> {
        let sha256 = sha256_hex(bytes);
        let path = self.path(&sha256);
        if path.exists() {
            return Ok((sha256, false));
        }
        write_atomically(&path, bytes)?;
        Ok((sha256, true))
    }

    /// Reads a blob, checking that its contents still match its name.
    pub fn get(&self, sha256: &str) -> io::Result<Vec<u8>> {
        let bytes = fs::read(self.path(sha256))?;
        if sha256_hex(&bytes) != sha256 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {sha256} is corrupt: its contents no longer match its hash"),
            ));
        }
        Ok(bytes)
    }

    /// Removes a blob; a blob that is already gone is not an error.
    pub fn remove(&self, sha256: &str) -> io::Result<()> {
        match fs::remove_file(self.path(sha256)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The hashes of every stored blob.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let suffix = format!(".{}", self.extension);
        let mut hashes = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name();
            if let Some(hash) = name.to_str().and_then(|n| n.strip_suffix(&suffix)) {
                hashes.push(hash.to_string());
            }
        }
        Ok(hashes)
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old state or
/// the whole new file: a temporary file in the same directory, synced, then
/// renamed over the target, then the directory synced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    fs::File::open(dir)?.sync_all()
}

/// Writes a file atomically (directories made as needed), readable and
/// writable by its owner only: keys, tokens.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    // tempfile makes the file 0600 before anything is written to it; the
    // mode is set again in case the platform's default differs.
    write_atomically(path, bytes)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_remove() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path().join("b"), "wasm").unwrap();
        let (hash, new) = blobs.put(b"abc").unwrap();
        assert!(new);
        assert_eq!(
            hash,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(!blobs.put(b"abc").unwrap().1);
        assert_eq!(blobs.get(&hash).unwrap(), b"abc");
        assert_eq!(blobs.list().unwrap(), vec![hash.clone()]);
        blobs.remove(&hash).unwrap();
        blobs.remove(&hash).unwrap();
        assert!(blobs.list().unwrap().is_empty());
    }

    #[test]
    fn corrupt_blob_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path(), "wasm").unwrap();
        let (hash, _) = blobs.put(b"abc").unwrap();
        fs::write(blobs.path(&hash), b"abd").unwrap();
        let err = blobs.get(&hash).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
