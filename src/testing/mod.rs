//! Test support, kept out of the product: compiled only with the `testing` feature (the
//! integration tests, `ocync-testdata`, the benchmark) and in the crate's own unit tests.
//!
//! Layering: this module sits on top of the library. It uses [`crate::registry`] and
//! [`crate::oci`] like any other caller, and nothing below it imports from here.
//! - [`testdata`]: images, indexes and artifacts with real digests, built locally.
//! - [`memory`]: the counting in-memory [`crate::registry::Registry`], the engine's test double.
//! - [`keys`]: key pairs that sign, for `verify` tests.
//! - [`sigstore`]: a local Fulcio CA and Rekor key with their trusted root (keyless tests).
//! - [`bench`]: the planning benchmark (`ocync-testdata plan-scale`) over the in-memory registry.

pub mod bench;
pub mod keys;
pub mod memory;
pub mod sigstore;
pub mod testdata;
