//! ocync mirrors container images, multi-arch indexes and OCI artifacts between registries,
//! bit for bit.
//!
//! Crate map:
//! - [`oci`]: references, digests, media types, manifests (pure).
//! - [`registry`]: the [`registry::Registry`] seam and its HTTP client (auth, uploads, retries).
//! - [`config`]: the `ocync.yaml` format and how registry settings are resolved from it.
//! - [`filter`]: tag selection (pure).
//! - [`engine`]: copies one image to any number of targets: children before index, blobs
//!   before manifest, each blob read once.
//! - [`cancel`]: the cancellation flag (signals, deadlines).
//! - [`watch`]: watch mode: the sync loop, health and metrics endpoints.
//! - [`lambda`]: the Lambda handler (schedule fan-out, SQS workers).
//! - [`mirror`]: mirror configuration for clusters and hosts that pull from the mirror (pure).
//! - [`pull_secret`]: ECR tokens into a Kubernetes pull secret, merged byte for byte.
//! - [`text`]: registry text made safe for terminals and logs (control characters escaped).
//! - [`logging`]: the log filter of the binaries, with secret-printing targets capped.
//! - [`cli`]: the command-line surface; `bin/ocync.rs` only calls [`cli::run`].
//!
//! Runtime model: everything is async on one multi-threaded tokio runtime built by the binary.
//! Blob bodies stream from source to target through a digest verifier; nothing buffers a
//! whole layer.

pub mod aws;
pub mod bench;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod connect;
pub mod engine;
pub mod filter;
pub mod lambda;
pub mod logging;
pub mod mirror;
pub mod oci;
pub mod plan;
pub mod pull_secret;
pub mod registry;
pub mod sync;
pub mod testdata;
pub mod text;
pub mod watch;
