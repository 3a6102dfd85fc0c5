//! Content digests (`sha256:<hex>`): every manifest, config and blob is checked against its
//! digest and size before it counts. A hashing reader lets the pull verify a layer while it
//! streams into the unpacker.

use std::io::Read;

use anyhow::{bail, Result};
use sha2::{Digest as _, Sha256};

/// `sha256:<hex>` of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hex part of a `sha256:` digest, checked.
pub fn hex_of(digest: &str) -> Result<&str> {
    match digest.strip_prefix("sha256:") {
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) => Ok(h),
        _ => bail!("digest `{digest}`: expected sha256: and 64 lowercase hex digits"),
    }
}

/// Checks `bytes` against `digest` (and `size` if given).
pub fn verify(bytes: &[u8], digest: &str, size: Option<u64>) -> Result<()> {
    hex_of(digest)?;
    if let Some(size) = size {
        if bytes.len() as u64 != size {
            bail!("size mismatch: got {} bytes, expected {size}", bytes.len());
        }
    }
    let got = sha256(bytes);
    if got != digest {
        bail!("digest mismatch: content is {got}");
    }
    Ok(())
}

/// A reader that hashes and counts what passes through it.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing { inner, hasher: Sha256::new(), count: 0 }
    }

    /// The digest and byte count of everything read so far.
    pub fn finish(self) -> (String, u64) {
        (format!("sha256:{}", hex(&self.hasher.finalize())), self.count)
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: std::io::Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hasher: Sha256::new(), count: 0 }
    }

    /// The inner writer, and the digest and byte count of everything written.
    pub fn finish(self) -> (W, String, u64) {
        (self.inner, format!("sha256:{}", hex(&self.hasher.finalize())), self.count)
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_and_hash() {
        let d = sha256(b"hello");
        assert_eq!(d, "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        verify(b"hello", &d, Some(5)).unwrap();
        assert!(verify(b"hellO", &d, None).unwrap_err().to_string().contains("digest mismatch"));
        assert!(verify(b"hello", &d, Some(4)).unwrap_err().to_string().contains("size mismatch"));
        assert!(hex_of("sha256:ABC").is_err());
        let mut r = Hashing::new(&b"hello"[..]);
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!(r.finish(), (d, 5));
    }
}
