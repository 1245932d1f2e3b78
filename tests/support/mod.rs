//! Test support: real registries on loopback ports, tools located with install hints, and
//! independent checks of what landed.

#![allow(dead_code)]

pub mod aad;
pub mod hostile;
pub mod hostile_registry;
pub mod http;
pub mod moto;
pub mod oauth;
pub mod proxy;
pub mod quota;
pub mod recorder;
pub mod referrers;
pub mod registry;
pub mod secret_api;
pub mod tls;
pub mod tmux;
pub mod token;
pub mod tools;

pub use registry::{RegistryOptions, TestRegistry};
