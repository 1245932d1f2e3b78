//! Content digests (`sha256:<hex>`): parsing, computing and verifying streamed bytes.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// A content digest such as `sha256:e3b0…`. Only the algorithms the OCI spec registers are
/// accepted, and the hex part must have that algorithm's length.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a string is not a digest.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest {input:?}: {reason}")]
pub struct DigestError {
    /// The text that failed to parse.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Digest {
    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Digest(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The digest of `bytes` computed with this digest's algorithm.
    pub fn same_algorithm_of(&self, bytes: &[u8]) -> Self {
        let mut verifier = Verifier::new(self);
        verifier.update(bytes);
        verifier.finish()
    }

    /// `sha256`, `sha512`.
    pub fn algorithm(&self) -> &str {
        self.0.split_once(':').map_or("", |(algorithm, _)| algorithm)
    }

    /// The hex part after the colon.
    pub fn hex(&self) -> &str {
        self.0.split_once(':').map_or("", |(_, hex)| hex)
    }

    /// The full `algorithm:hex` text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| DigestError { input: input.to_string(), reason };
        let (algorithm, hex) = input.split_once(':').ok_or_else(|| fail("expected algorithm:hex"))?;
        let expected_len = match algorithm {
            "sha256" => 64,
            "sha512" => 128,
            _ => return Err(fail("unsupported algorithm (expected sha256 or sha512)")),
        };
        if hex.len() != expected_len {
            return Err(fail("hex part has the wrong length for its algorithm"));
        }
        if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(fail("hex part must be lowercase hexadecimal"));
        }
        Ok(Digest(input.to_string()))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.0)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes bytes as they stream past, with the algorithm of the digest they should have.
pub enum Verifier {
    /// sha256 in progress.
    Sha256(Sha256),
    /// sha512 in progress.
    Sha512(Sha512),
}

impl Verifier {
    /// A hasher for the algorithm of `expected`.
    pub fn new(expected: &Digest) -> Self {
        match expected.algorithm() {
            "sha512" => Verifier::Sha512(Sha512::new()),
            _ => Verifier::Sha256(Sha256::new()),
        }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Verifier::Sha256(hasher) => hasher.update(bytes),
            Verifier::Sha512(hasher) => hasher.update(bytes),
        }
    }

    /// The digest of everything fed so far.
    pub fn finish(self) -> Digest {
        match self {
            Verifier::Sha256(hasher) => Digest(format!("sha256:{}", hex::encode(hasher.finalize()))),
            Verifier::Sha512(hasher) => Digest(format!("sha512:{}", hex::encode(hasher.finalize()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn sha256_of_empty_input_is_the_well_known_value() {
        assert_eq!(Digest::sha256_of(b"").as_str(), EMPTY_SHA256);
    }

    #[test]
    fn parses_a_valid_sha256_digest() {
        let digest: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(digest.algorithm(), "sha256");
        assert_eq!(digest.hex().len(), 64);
    }

    #[test]
    fn rejects_malformed_digests_with_a_reason() {
        for (input, reason) in [
            ("sha256", "expected algorithm:hex"),
            ("md5:abcd", "unsupported algorithm (expected sha256 or sha512)"),
            ("sha256:abcd", "hex part has the wrong length for its algorithm"),
            (&EMPTY_SHA256.to_uppercase().replace("SHA", "sha"), "hex part must be lowercase hexadecimal"),
        ] {
            let error = input.parse::<Digest>().unwrap_err();
            assert_eq!(error.reason, reason, "{input}");
            assert!(error.to_string().contains(input));
        }
    }

    #[test]
    fn verifier_matches_one_shot_hash_across_chunks() {
        let digest = Digest::sha256_of(b"hello world");
        let mut verifier = Verifier::new(&digest);
        verifier.update(b"hello ");
        verifier.update(b"world");
        assert_eq!(verifier.finish(), digest);
    }

    #[test]
    fn sha512_digests_are_verified_with_sha512() {
        let hex = "a".repeat(128);
        let digest: Digest = format!("sha512:{hex}").parse().unwrap();
        let computed = digest.same_algorithm_of(b"x");
        assert_eq!(computed.algorithm(), "sha512");
    }
}
