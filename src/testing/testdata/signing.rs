//! Supply-chain artifacts in the shapes real tools produce, with real digests: cosign's tag
//! schema (`.sig`, `.att`, `.sbom` images without `subject`), OCI 1.1 referrers as cosign's
//! bundle format, notation and SBOM tools push them (`subject` + `artifactType`), and buildx
//! indexes whose attestation manifests sit beside the images they describe.

use bytes::Bytes;
use serde_json::{Value, json};

use super::{Blob, Built, Image, descriptor, image, manifest_of};
use crate::oci::{Digest, Manifest, media_type};

/// cosign's simple-signing layer.
const COSIGN_SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// DSSE envelope (cosign attestations).
const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Sigstore bundle, cosign's OCI 1.1 signature artifact type.
pub const SIGSTORE_BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// notation's signature artifact type.
pub const NOTATION_SIGNATURE: &str = "application/vnd.cncf.notary.signature";
/// SPDX SBOM media type.
pub const SPDX: &str = "application/spdx+json";
/// in-toto statement layers of buildx attestation manifests.
const IN_TOTO: &str = "application/vnd.in-toto+json";

/// A layer: media type, bytes, annotations.
type Layer = (&'static str, Bytes, Value);

/// An OCI manifest from a config (media type, bytes) and layers, with an optional
/// `artifactType`, `subject` and top-level annotations.
pub(super) fn assemble(
    config: (&str, Bytes),
    layers: Vec<Layer>,
    artifact_type: Option<&str>,
    subject: Option<&Manifest>,
    annotations: Option<Value>,
) -> Image {
    let config_blob = Blob::inline(config.1);
    let layer_blobs: Vec<Blob> = layers.iter().map(|(_, bytes, _)| Blob::inline(bytes.clone())).collect();
    let layer_descriptors: Vec<Value> = layers
        .iter()
        .zip(&layer_blobs)
        .map(|((media_type, _, annotations), blob)| {
            let mut value = descriptor(media_type, &blob.descriptor);
            if annotations.is_object() {
                value["annotations"] = annotations.clone();
            }
            value
        })
        .collect();
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": media_type::OCI_MANIFEST,
        "config": descriptor(config.0, &config_blob.descriptor),
        "layers": layer_descriptors,
    });
    if let Some(artifact_type) = artifact_type {
        value["artifactType"] = json!(artifact_type);
    }
    if let Some(subject) = subject {
        value["subject"] =
            json!({ "mediaType": subject.media_type, "digest": subject.digest, "size": subject.bytes.len() });
    }
    if let Some(annotations) = annotations {
        value["annotations"] = annotations;
    }
    Image {
        manifest: manifest_of(value, media_type::OCI_MANIFEST),
        blobs: std::iter::once(config_blob).chain(layer_blobs).collect(),
    }
}

fn json_bytes(value: Value) -> Bytes {
    Bytes::from(serde_json::to_vec(&value).expect("JSON values serialise"))
}

/// The config cosign writes for its tag-schema images.
fn cosign_config(layers: &[Layer]) -> (&'static str, Bytes) {
    let diff_ids: Vec<String> =
        layers.iter().map(|(_, bytes, _)| crate::oci::Digest::sha256_of(bytes).to_string()).collect();
    (
        "application/vnd.oci.image.config.v1+json",
        json_bytes(
            json!({ "architecture": "", "os": "", "config": {}, "rootfs": { "type": "layers", "diff_ids": diff_ids } }),
        ),
    )
}

/// What cosign pushes as `sha256-<hex>.sig`: a simple-signing payload naming the subject,
/// with the signature in an annotation; `seed` varies the signature.
pub fn cosign_signature(subject: &Manifest, seed: u64) -> Image {
    let layers: Vec<Layer> = vec![(
        COSIGN_SIMPLESIGNING,
        simple_signing_payload(&subject.digest),
        json!({ "dev.cosignproject.cosign/signature": format!("MEUCIQ{seed:016x}") }),
    )];
    assemble(cosign_config(&layers), layers, None, None, None)
}

/// The simple-signing payload cosign signs for an image digest.
fn simple_signing_payload(signed: &Digest) -> Bytes {
    json_bytes(json!({
        "critical": {
            "identity": { "docker-reference": "registry.test/app" },
            "image": { "docker-manifest-digest": signed },
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
}

/// What `cosign sign --key` pushes as `sha256-<hex>.sig`: a simple-signing payload naming
/// `signed` (the subject's digest, unless a test forges another) with `sign`'s real signature.
pub fn signed_cosign_signature(signed: &Digest, sign: impl Fn(&[u8]) -> Vec<u8>) -> Image {
    cosign_signature_with(signed, sign, |_, _| json!({}))
}

/// [`signed_cosign_signature`] with more annotations on the layer, made from the payload and
/// the signature (keyless: the certificate and the Rekor entry).
pub fn cosign_signature_with(
    signed: &Digest,
    sign: impl Fn(&[u8]) -> Vec<u8>,
    annotate: impl Fn(&[u8], &[u8]) -> Value,
) -> Image {
    use base64::Engine as _;
    let payload = simple_signing_payload(signed);
    let signature = sign(&payload);
    let mut annotations = annotate(&payload, &signature);
    annotations["dev.cosignproject.cosign/signature"] =
        json!(base64::engine::general_purpose::STANDARD.encode(&signature));
    let layers: Vec<Layer> = vec![(COSIGN_SIMPLESIGNING, payload, annotations)];
    assemble(cosign_config(&layers), layers, None, None, None)
}

/// What `cosign sign --key --new-bundle-format` attaches to `subject`: a Sigstore bundle whose
/// DSSE envelope holds an in-toto statement naming `signed`, signed by `sign`.
pub fn signed_bundle(subject: &Manifest, signed: &Digest, sign: impl Fn(&[u8]) -> Vec<u8>) -> Image {
    bundle_with(subject, signed, sign, |_, _| json!({ "publicKey": { "hint": "" }, "tlogEntries": [] }))
}

/// [`signed_bundle`] with the `verificationMaterial` made from the envelope's payload and
/// signature (keyless: the certificate and the Rekor entry).
pub fn bundle_with(
    subject: &Manifest,
    signed: &Digest,
    sign: impl Fn(&[u8]) -> Vec<u8>,
    material: impl Fn(&[u8], &[u8]) -> Value,
) -> Image {
    use base64::Engine as _;
    let base64 = base64::engine::general_purpose::STANDARD;
    let statement = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{ "name": "registry.test/app", "digest": { signed.algorithm(): signed.hex() } }],
        "predicateType": "https://sigstore.dev/cosign/sign/v1",
        "predicate": {},
    });
    let payload = serde_json::to_vec(&statement).expect("JSON values serialise");
    let signature = sign(&crate::verify::bundle::pae(IN_TOTO, &payload));
    let bundle = json!({
        "mediaType": SIGSTORE_BUNDLE,
        "verificationMaterial": material(&payload, &signature),
        "dsseEnvelope": {
            "payload": base64.encode(&payload),
            "payloadType": IN_TOTO,
            "signatures": [{ "sig": base64.encode(signature), "keyid": "" }],
        },
    });
    bundle_referrer(bundle, subject)
}

/// What cosign pushes as `sha256-<hex>.att`: a DSSE envelope with an in-toto statement.
pub fn cosign_attestation(subject: &Manifest, predicate_type: &str) -> Image {
    let statement = json!({ "_type": "https://in-toto.io/Statement/v0.1", "predicateType": predicate_type, "subject": [{ "digest": { "sha256": subject.digest.hex() } }] });
    let envelope =
        json!({ "payloadType": "application/vnd.in-toto+json", "payload": statement.to_string(), "signatures": [] });
    let layers: Vec<Layer> = vec![(DSSE_ENVELOPE, json_bytes(envelope), json!({ "predicateType": predicate_type }))];
    assemble(cosign_config(&layers), layers, None, None, None)
}

/// What `cosign attach sbom` pushes as `sha256-<hex>.sbom`.
pub fn cosign_sbom(subject: &Manifest) -> Image {
    let layers: Vec<Layer> = vec![("text/spdx+json", json_bytes(spdx_document(subject)), Value::Null)];
    assemble(cosign_config(&layers), layers, None, None, None)
}

fn spdx_document(subject: &Manifest) -> Value {
    json!({ "spdxVersion": "SPDX-2.3", "name": subject.digest, "packages": [] })
}

/// The OCI 1.1 referrer cosign pushes for a sigstore `bundle` of `subject`.
fn bundle_referrer(bundle: Value, subject: &Manifest) -> Image {
    assemble(
        (media_type::OCI_EMPTY, Bytes::from_static(b"{}")),
        vec![(SIGSTORE_BUNDLE, json_bytes(bundle), Value::Null)],
        Some(SIGSTORE_BUNDLE),
        Some(subject),
        Some(json!({ "dev.sigstore.bundle.predicateType": "https://sigstore.dev/cosign/sign/v1" })),
    )
}

/// cosign's OCI 1.1 signature: a sigstore bundle referring to `subject`.
pub fn bundle_signature(subject: &Manifest, seed: u64) -> Image {
    let bundle = json!({ "mediaType": SIGSTORE_BUNDLE, "messageSignature": { "signature": format!("{seed:032x}") } });
    bundle_referrer(bundle, subject)
}

/// notation's signature: a JWS envelope referring to `subject`.
pub fn notation_signature(subject: &Manifest, seed: u64) -> Image {
    let envelope = json!({ "payload": subject.digest, "protected": format!("{seed:x}"), "signature": "c2ln" });
    assemble(
        (media_type::OCI_EMPTY, Bytes::from_static(b"{}")),
        vec![("application/jose+json", json_bytes(envelope), Value::Null)],
        Some(NOTATION_SIGNATURE),
        Some(subject),
        Some(json!({ "io.cncf.notary.x509chain.thumbprint#S256": format!("[\"{seed:064x}\"]") })),
    )
}

/// An SPDX SBOM referring to `subject` (as `oras attach` or `syft` push it).
pub fn sbom_referrer(subject: &Manifest) -> Image {
    assemble(
        (media_type::OCI_EMPTY, Bytes::from_static(b"{}")),
        vec![(SPDX, json_bytes(spdx_document(subject)), Value::Null)],
        Some(SPDX),
        Some(subject),
        None,
    )
}

/// A buildx index: one image per platform, then one attestation manifest per image
/// (SBOM and provenance statements) marked with buildx's `vnd.docker.reference.*`.
pub fn buildx_index(seed: u64, platforms: &[(&str, &str)]) -> Built {
    let images: Vec<Image> = platforms
        .iter()
        .enumerate()
        .map(|(i, &platform)| image(&[(seed * 100 + i as u64, 2048)], platform, false))
        .collect();
    let attestations: Vec<Image> = images
        .iter()
        .map(|image| {
            let statement = |predicate: &str| {
                let layer = json!({ "predicateType": predicate, "subject": [{ "digest": { "sha256": image.manifest.digest.hex() } }] });
                (IN_TOTO, json_bytes(layer), json!({ "in-toto.io/predicate-type": predicate }))
            };
            let layers = vec![statement("https://spdx.dev/Document"), statement("https://slsa.dev/provenance/v0.2")];
            assemble(cosign_config(&layers), layers, None, None, None)
        })
        .collect();
    let mut entries: Vec<Value> = images
        .iter()
        .zip(platforms)
        .map(|(image, (os, architecture))| {
            json!({ "mediaType": image.manifest.media_type, "digest": image.manifest.digest, "size": image.manifest.bytes.len(), "platform": { "os": os, "architecture": architecture } })
        })
        .collect();
    entries.extend(images.iter().zip(&attestations).map(|(image, attestation)| {
        json!({
            "mediaType": attestation.manifest.media_type,
            "digest": attestation.manifest.digest,
            "size": attestation.manifest.bytes.len(),
            "platform": { "os": "unknown", "architecture": "unknown" },
            "annotations": { "vnd.docker.reference.digest": image.manifest.digest, "vnd.docker.reference.type": "attestation-manifest" },
        })
    }));
    let index = manifest_of(
        json!({ "schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": entries }),
        media_type::OCI_INDEX,
    );
    Built::Index { index, children: images.into_iter().chain(attestations).collect() }
}
