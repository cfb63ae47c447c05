//! sha256 content hashes, as lower-case hex.

use sha2::{Digest, Sha256};
use std::path::Path;

/// sha256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// sha256 of a string's UTF-8 bytes.
pub fn sha256_str(s: &str) -> String {
    sha256_bytes(s.as_bytes())
}

/// sha256 of a file's bytes, read in blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        // printf 'abc' | sha256sum
        assert_eq!(
            sha256_str("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let dir = std::env::temp_dir().join(format!("eb-hash-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("x");
        std::fs::write(&f, vec![7u8; 3 << 20]).unwrap();
        assert_eq!(sha256_file(&f).unwrap(), sha256_bytes(&vec![7u8; 3 << 20]));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
