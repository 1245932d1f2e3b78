//! Key pairs that sign, for `verify` tests: generated in process with aws-lc-rs (the crypto
//! library the product verifies with), exported as the PEM files users hand to the config.

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use x509_cert::der::pem::{LineEnding, encode_string};

/// The kinds of key a test can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigningKind {
    /// ECDSA P-256 with SHA-256 (cosign's default).
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
    /// RSA 2048, PKCS#1 v1.5 with SHA-256.
    Rsa,
    /// Ed25519.
    Ed25519,
}

enum Private {
    Ecdsa(EcdsaKeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A generated key pair.
pub struct KeyPair {
    private: Private,
}

impl KeyPair {
    /// A fresh key pair of `kind`.
    pub fn generate(kind: SigningKind) -> KeyPair {
        let private = match kind {
            SigningKind::P256 => Private::Ecdsa(
                EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING).expect("P-256 key generation"),
            ),
            SigningKind::P384 => Private::Ecdsa(
                EcdsaKeyPair::generate(&signature::ECDSA_P384_SHA384_ASN1_SIGNING).expect("P-384 key generation"),
            ),
            SigningKind::Rsa => Private::Rsa(
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key generation"),
            ),
            SigningKind::Ed25519 => Private::Ed25519(Ed25519KeyPair::generate().expect("Ed25519 key generation")),
        };
        KeyPair { private }
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn public_der(&self) -> Vec<u8> {
        let der: Result<PublicKeyX509Der, _> = match &self.private {
            Private::Ecdsa(pair) => pair.public_key().as_der(),
            Private::Rsa(pair) => pair.public_key().as_der(),
            Private::Ed25519(pair) => pair.public_key().as_der(),
        };
        der.expect("public keys encode").as_ref().to_vec()
    }

    /// The public key as a PEM `PUBLIC KEY` file, as `cosign generate-key-pair` writes it.
    pub fn public_pem(&self) -> String {
        encode_string("PUBLIC KEY", LineEnding::LF, &self.public_der()).expect("PEM encodes")
    }

    /// The private key as a PEM `PRIVATE KEY` (PKCS#8), to show a wrong file is refused.
    pub fn private_pem(&self) -> String {
        let der = match &self.private {
            Private::Ecdsa(pair) => pair.to_pkcs8v1().expect("PKCS#8").as_ref().to_vec(),
            Private::Rsa(pair) => {
                AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(pair).expect("PKCS#8").as_ref().to_vec()
            }
            Private::Ed25519(pair) => pair.to_pkcs8v1().expect("PKCS#8").as_ref().to_vec(),
        };
        encode_string("PRIVATE KEY", LineEnding::LF, &der).expect("PEM encodes")
    }

    /// `sha256:<hex>` of the DER public key, as reports name signers.
    pub fn fingerprint(&self) -> String {
        crate::oci::Digest::sha256_of(&self.public_der()).to_string()
    }

    /// A signature over `message` (DER for ECDSA, as cosign stores it).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.private {
            Private::Ecdsa(pair) => pair.sign(&rng, message).expect("ECDSA signs").as_ref().to_vec(),
            Private::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature).expect("RSA signs");
                signature
            }
            Private::Ed25519(pair) => pair.sign(message).as_ref().to_vec(),
        }
    }
}
