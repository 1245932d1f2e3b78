//! ocync mirrors container images, multi-arch indexes and OCI artifacts between registries,
//! bit for bit.
//!
//! Crate map:
//! - [`oci`]: references, digests, media types, manifests (pure).
//! - [`registry`]: the [`registry::Registry`] seam and its HTTP client (auth, uploads, retries).
//! - [`config`]: the `ocync.yaml` format and how registry settings are resolved from it.
//! - [`copy`]: the engine that copies one image, children before index, blobs before manifest.
//! - [`cli`]: the command-line surface; `bin/ocync.rs` only calls [`cli::main`].
//!
//! Runtime model: everything is async on one multi-threaded tokio runtime built by the binary.
//! Blob bodies stream from source to target through a digest verifier; nothing buffers a
//! whole layer.

pub mod cli;
pub mod config;
pub mod connect;
pub mod copy;
pub mod filter;
pub mod oci;
pub mod registry;
pub mod testdata;
