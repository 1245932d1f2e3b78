//! Which family a registry belongs to, from its host name: ECR, GAR, GCR, ACR, Docker Hub or
//! a generic OCI registry. The family decides the default authentication and the quirks.

/// A registry family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryKind {
    /// Amazon ECR (private).
    Ecr(EcrHost),
    /// Google Artifact Registry (`*-docker.pkg.dev`).
    Gar,
    /// Google Container Registry (`gcr.io`, `*.gcr.io`).
    Gcr,
    /// Azure Container Registry (`*.azurecr.io`).
    Acr,
    /// Docker Hub (`docker.io`, `registry-1.docker.io`).
    DockerHub,
    /// Anything else.
    Generic,
}

/// The parts of an ECR host name: `<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrHost {
    /// The 12-digit account id (the registry id).
    pub account: String,
    /// The region.
    pub region: String,
    /// Whether the host is the FIPS endpoint.
    pub fips: bool,
    /// Whether it is in an AWS China region (`.amazonaws.com.cn`).
    pub china: bool,
}

impl RegistryKind {
    /// The family of `host` (with or without a port).
    pub fn detect(host: &str) -> RegistryKind {
        let name = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        if let Some(ecr) = EcrHost::parse(&name) {
            RegistryKind::Ecr(ecr)
        } else if name.ends_with("-docker.pkg.dev") {
            RegistryKind::Gar
        } else if name == "gcr.io" || name.ends_with(".gcr.io") {
            RegistryKind::Gcr
        } else if name.ends_with(".azurecr.io") {
            RegistryKind::Acr
        } else if crate::oci::is_docker_hub(&name) {
            RegistryKind::DockerHub
        } else {
            RegistryKind::Generic
        }
    }
}

impl RegistryKind {
    /// Whether the registry takes chunked (`PATCH`) uploads. GAR and GCR do not (Google
    /// documents monolithic and streamed single-request uploads only), so a refused monolithic
    /// upload there is final, and `upload: chunked` for them is a config error.
    pub fn accepts_chunked_uploads(&self) -> bool {
        !matches!(self, RegistryKind::Gar | RegistryKind::Gcr)
    }
}

impl EcrHost {
    /// Parses an ECR host name; `None` for anything else.
    pub fn parse(host: &str) -> Option<EcrHost> {
        let (rest, china) = match host.strip_suffix(".amazonaws.com.cn") {
            Some(rest) => (rest, true),
            None => (host.strip_suffix(".amazonaws.com")?, false),
        };
        let mut parts = rest.split('.');
        let (account, dkr, ecr, region) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || dkr != "dkr" {
            return None;
        }
        let fips = match ecr {
            "ecr" => false,
            "ecr-fips" => true,
            _ => return None,
        };
        let valid_account = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
        let valid_region =
            !region.is_empty() && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        (valid_account && valid_region).then(|| EcrHost { account: account.into(), region: region.into(), fips, china })
    }

    /// The FIPS endpoint of the same registry (`…dkr.ecr-fips.<region>…`).
    pub fn fips_host(&self) -> String {
        let suffix = if self.china { "amazonaws.com.cn" } else { "amazonaws.com" };
        format!("{}.dkr.ecr-fips.{}.{suffix}", self.account, self.region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gar_and_gcr_take_no_chunked_uploads_and_others_do() {
        for host in ["us-docker.pkg.dev", "europe-west1-docker.pkg.dev", "gcr.io", "eu.gcr.io"] {
            assert!(!RegistryKind::detect(host).accepts_chunked_uploads(), "{host}");
        }
        for host in ["123456789012.dkr.ecr.us-east-1.amazonaws.com", "docker.io", "ghcr.io", "127.0.0.1:5000"] {
            assert!(RegistryKind::detect(host).accepts_chunked_uploads(), "{host}");
        }
    }

    #[test]
    fn detects_ecr_hosts_with_region_fips_and_china() {
        let host = EcrHost::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
        assert_eq!(
            (host.account.as_str(), host.region.as_str(), host.fips, host.china),
            ("123456789012", "us-east-1", false, false)
        );
        assert!(EcrHost::parse("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com").unwrap().fips);
        assert!(EcrHost::parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").unwrap().china);
        assert_eq!(host.fips_host(), "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com");
    }

    #[test]
    fn rejects_look_alikes() {
        for host in [
            "public.ecr.aws",
            "12345.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.io",
            "123456789012.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.us-east-1.example.com",
        ] {
            assert_eq!(EcrHost::parse(host), None, "{host}");
        }
    }

    #[test]
    fn detects_every_family() {
        assert!(matches!(RegistryKind::detect("123456789012.dkr.ecr.eu-west-1.amazonaws.com"), RegistryKind::Ecr(_)));
        assert_eq!(RegistryKind::detect("us-docker.pkg.dev"), RegistryKind::Gar);
        assert_eq!(RegistryKind::detect("europe-west1-docker.pkg.dev"), RegistryKind::Gar);
        assert_eq!(RegistryKind::detect("gcr.io"), RegistryKind::Gcr);
        assert_eq!(RegistryKind::detect("eu.gcr.io"), RegistryKind::Gcr);
        assert_eq!(RegistryKind::detect("myreg.azurecr.io"), RegistryKind::Acr);
        assert_eq!(RegistryKind::detect("docker.io"), RegistryKind::DockerHub);
        assert_eq!(RegistryKind::detect("ghcr.io"), RegistryKind::Generic);
        assert_eq!(RegistryKind::detect("127.0.0.1:5000"), RegistryKind::Generic);
    }
}
