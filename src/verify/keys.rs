//! Public keys a `verify` policy trusts: PEM `PUBLIC KEY` files (SubjectPublicKeyInfo) of
//! ECDSA P-256/P-384, RSA or Ed25519, decoded with RustCrypto's DER types and checked with
//! aws-lc-rs, the crypto library rustls already builds.

use std::fmt;
use std::path::Path;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode};
use x509_cert::spki::SubjectPublicKeyInfoOwned;

use crate::oci::Digest;

/// id-ecPublicKey (RFC 5480).
const EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// prime256v1 / P-256.
const P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
/// secp384r1 / P-384.
const P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// rsaEncryption (RFC 8017).
const RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// id-Ed25519 (RFC 8410).
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The kinds of key cosign signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// ECDSA over P-256.
    P256,
    /// ECDSA over P-384.
    P384,
    /// RSA (PKCS#1 v1.5 or PSS).
    Rsa,
    /// Ed25519.
    Ed25519,
}

impl KeyKind {
    /// The algorithms a signature by such a key may use. cosign hashes with SHA-256 whatever
    /// the key (its default), newer Sigstore clients pair P-384 with SHA-384 and RSA with PSS.
    fn algorithms(self) -> &'static [&'static dyn VerificationAlgorithm] {
        match self {
            KeyKind::P256 => &[&signature::ECDSA_P256_SHA256_ASN1],
            KeyKind::P384 => &[&signature::ECDSA_P384_SHA384_ASN1, &signature::ECDSA_P384_SHA256_ASN1],
            KeyKind::Rsa => &[
                &signature::RSA_PKCS1_2048_8192_SHA256,
                &signature::RSA_PSS_2048_8192_SHA256,
                &signature::RSA_PKCS1_2048_8192_SHA384,
                &signature::RSA_PKCS1_2048_8192_SHA512,
            ],
            KeyKind::Ed25519 => &[&signature::ED25519],
        }
    }
}

/// A trusted public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    kind: KeyKind,
    /// The key as the algorithm takes it: the SubjectPublicKeyInfo's bit string (an EC point,
    /// a PKCS#1 RSA key, 32 Ed25519 bytes).
    raw: Vec<u8>,
    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo.
    fingerprint: String,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("kind", &self.kind).field("fingerprint", &self.fingerprint).finish()
    }
}

impl PublicKey {
    /// Reads a PEM `PUBLIC KEY` file; the error says what is wrong with it.
    pub fn load(path: &Path) -> Result<PublicKey, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
        PublicKey::from_pem(&text).map_err(|reason| format!("key file {}: {reason}", path.display()))
    }

    /// Parses a PEM `PUBLIC KEY` block.
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, String> {
        let (label, der) = x509_cert::der::pem::decode_vec(pem).map_err(|e| format!("not a PEM public key ({e})"))?;
        if label != "PUBLIC KEY" {
            return Err(format!("holds a PEM {label:?} block; a \"PUBLIC KEY\" (SubjectPublicKeyInfo) is needed"));
        }
        PublicKey::from_spki_der(&der)
    }

    /// Parses a DER SubjectPublicKeyInfo (as certificates and bundles carry it).
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, String> {
        let spki = SubjectPublicKeyInfoOwned::from_der(der).map_err(|e| format!("not a public key ({e})"))?;
        PublicKey::from_spki(&spki)
    }

    /// A key from its decoded SubjectPublicKeyInfo.
    pub fn from_spki(spki: &SubjectPublicKeyInfoOwned) -> Result<PublicKey, String> {
        let algorithm = &spki.algorithm;
        let kind = match algorithm.oid {
            EC_PUBLIC_KEY => {
                let curve = algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
                    .ok_or("an EC key without a named curve")?;
                match curve {
                    P256 => KeyKind::P256,
                    P384 => KeyKind::P384,
                    other => return Err(format!("EC curve {other} is not supported (P-256 or P-384)")),
                }
            }
            RSA => KeyKind::Rsa,
            ED25519 => KeyKind::Ed25519,
            other => return Err(format!("key algorithm {other} is not supported (ECDSA, RSA or Ed25519)")),
        };
        let raw = spki.subject_public_key.as_bytes().ok_or("a public key bit string with unused bits")?.to_vec();
        let der = spki.to_der().map_err(|e| format!("cannot encode the key ({e})"))?;
        Ok(PublicKey { kind, raw, fingerprint: Digest::sha256_of(&der).to_string() })
    }

    /// `sha256:<hex>` of the DER SubjectPublicKeyInfo, as
    /// `openssl pkey -pubin -outform DER | sha256sum` prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether `signature` over `message` verifies with this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        self.kind
            .algorithms()
            .iter()
            .any(|algorithm| UnparsedPublicKey::new(*algorithm, &self.raw).verify(message, signature).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::keys::{KeyPair, SigningKind};

    #[test]
    fn every_supported_kind_verifies_its_own_signatures_and_nothing_else() {
        for kind in [SigningKind::P256, SigningKind::P384, SigningKind::Rsa, SigningKind::Ed25519] {
            let pair = KeyPair::generate(kind);
            let key = PublicKey::from_pem(pair.public_pem().as_bytes()).unwrap();
            let signature = pair.sign(b"payload");
            assert!(key.verifies(b"payload", &signature), "{kind:?}");
            assert!(!key.verifies(b"payloaD", &signature), "{kind:?}");
            let other = KeyPair::generate(kind);
            assert!(!PublicKey::from_pem(other.public_pem().as_bytes()).unwrap().verifies(b"payload", &signature));
            assert_eq!(key.fingerprint(), pair.fingerprint(), "{kind:?}");
        }
    }

    #[test]
    fn files_that_are_not_public_keys_are_refused_with_a_reason() {
        let pair = KeyPair::generate(SigningKind::P256);
        let private = PublicKey::from_pem(pair.private_pem().as_bytes()).unwrap_err();
        assert!(private.contains("\"PRIVATE KEY\""), "{private}");
        assert!(PublicKey::from_pem(b"hello").unwrap_err().starts_with("not a PEM public key"));
    }
}
