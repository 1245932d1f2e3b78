//! FIPS mode: which crypto module this build runs on, and the start-up check that a build made
//! with the `fips` feature refuses to run without it.
//!
//! A `fips` build links AWS-LC's FIPS module (`aws-lc-fips-sys`) under every rustls client and
//! installs rustls' FIPS provider as the process default, which reqwest (the registry client)
//! builds its TLS configs from. Before any command runs, [`enforce`] asks the module whether it
//! is in FIPS mode (its power-on self tests passed) and the provider whether every algorithm it
//! offers is FIPS-approved; either answer "no" stops the process.

/// Whether this binary was built with the `fips` feature.
pub const BUILT_WITH_FIPS: bool = cfg!(feature = "fips");

/// What the crypto module and rustls' default provider report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Built with the `fips` feature (the FIPS module is linked).
    pub required: bool,
    /// The module's own answer: `Ok` in FIPS mode, else its reason.
    pub module: Result<(), String>,
    /// rustls' process-default provider offers only FIPS-approved algorithms.
    pub provider_fips: bool,
    /// The linked AWS-LC release (`1.2.3`).
    pub awslc_version: String,
}

/// Why a `fips` build refuses to start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The FIPS module is linked but does not report FIPS mode.
    #[error(
        "built with the fips feature, but the AWS-LC crypto module is not in FIPS mode ({reason}); refusing to start"
    )]
    ModuleNotInFipsMode {
        /// What the module said.
        reason: String,
    },
    /// The TLS provider would offer algorithms outside the FIPS-approved set.
    #[error("built with the fips feature, but the rustls crypto provider is not FIPS-only; refusing to start")]
    ProviderNotFips,
}

impl Status {
    /// The start-up decision: a build without the `fips` feature always starts; a `fips` build
    /// starts only when both the module and the provider report FIPS.
    pub fn check(&self) -> Result<(), Error> {
        if !self.required {
            return Ok(());
        }
        if let Err(reason) = &self.module {
            return Err(Error::ModuleNotInFipsMode { reason: reason.clone() });
        }
        if !self.provider_fips {
            return Err(Error::ProviderNotFips);
        }
        Ok(())
    }

    /// One line for `ocync version`: `fips: enabled (…)`, `fips: not enabled (…)`, or the
    /// failure of a `fips` build.
    pub fn describe(&self) -> String {
        match (self.required, self.check()) {
            (true, Ok(())) => format!("enabled (AWS-LC FIPS {}, module in FIPS mode)", self.awslc_version),
            (true, Err(error)) => format!("FAILED: {error}"),
            (false, _) => format!("not enabled (AWS-LC {}; build with --features fips)", self.awslc_version),
        }
    }
}

/// Installs rustls' process-default crypto provider (the FIPS one in a `fips` build) and reads
/// what the module and the provider report. Safe to call more than once.
pub fn status() -> Status {
    // Fails only when a provider is already installed (a second call): then that one is read.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let provider_fips = rustls::crypto::CryptoProvider::get_default().is_some_and(|provider| provider.fips());
    Status {
        required: BUILT_WITH_FIPS,
        module: aws_lc_rs::try_fips_mode().map_err(str::to_string),
        provider_fips,
        awslc_version: aws_lc_rs::awslc_version().to_string(),
    }
}

/// The start-up check every command (and the Lambda function) runs first: `Err` when a `fips`
/// build is not in FIPS mode.
pub fn enforce() -> Result<(), Error> {
    status().check()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(required: bool, module: Result<(), &str>, provider_fips: bool) -> Status {
        Status { required, module: module.map_err(str::to_string), provider_fips, awslc_version: "1.2.3".to_string() }
    }

    #[test]
    fn a_fips_build_refuses_a_module_outside_fips_mode() {
        let refused = status(true, Err("FIPS mode not enabled!"), true).check();
        assert_eq!(refused, Err(Error::ModuleNotInFipsMode { reason: "FIPS mode not enabled!".to_string() }));
    }

    #[test]
    fn a_fips_build_refuses_a_provider_with_non_fips_algorithms() {
        assert_eq!(status(true, Ok(()), false).check(), Err(Error::ProviderNotFips));
    }

    #[test]
    fn a_provider_offering_chacha20_is_not_fips_so_a_fips_build_refuses_it() {
        // ChaCha20-Poly1305 is not FIPS-approved; rustls' FIPS default leaves it out.
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        provider.cipher_suites = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES.to_vec();
        assert!(!provider.fips());
        assert_eq!(status(true, Ok(()), provider.fips()).check(), Err(Error::ProviderNotFips));
    }

    #[test]
    fn a_fips_build_starts_when_module_and_provider_report_fips() {
        assert_eq!(status(true, Ok(()), true).check(), Ok(()));
        assert!(status(true, Ok(()), true).describe().starts_with("enabled (AWS-LC FIPS 1.2.3"));
    }

    #[test]
    fn a_build_without_the_feature_starts_and_says_fips_is_off() {
        let plain = status(false, Err("FIPS mode not enabled!"), false);
        assert_eq!(plain.check(), Ok(()));
        assert!(plain.describe().starts_with("not enabled"), "{}", plain.describe());
    }

    #[test]
    fn this_build_reports_what_its_feature_says() {
        let here = super::status();
        assert_eq!(here.required, cfg!(feature = "fips"));
        // The module is in FIPS mode exactly when the FIPS module is linked.
        assert_eq!(here.module.is_ok(), cfg!(feature = "fips"), "{here:?}");
        assert_eq!(here.check(), Ok(()), "{here:?}");
    }
}
