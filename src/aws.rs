//! AWS SDK plumbing shared by ECR, S3 (configs) and SQS (the Lambda fan-out): loading the SDK
//! config and describing SDK errors without request details.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// Loads the AWS SDK config from the default chain (environment, shared files and profiles,
/// SSO, container and instance roles, IRSA, EKS Pod Identity), with an explicit `region` and
/// named `profile` when given. `AWS_ENDPOINT_URL*` and `AWS_USE_FIPS_ENDPOINT` apply.
pub async fn sdk_config(region: Option<&str>, profile: Option<&str>) -> aws_config::SdkConfig {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_string()));
    }
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    loader.load().await
}

/// A service error as `Code: message`; a transport error with its causes. Never the request.
pub fn describe<E, R>(error: &SdkError<E, R>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match error.code() {
        Some(code) => format!("{code}: {}", error.message().unwrap_or("")),
        None => crate::text::error_chain(error),
    }
}

/// Error codes with which AWS refuses the caller's identity or its permissions, as opposed to
/// the request. Each service spells them its own way: ECR/STS JSON APIs say
/// `AccessDeniedException`, S3 and the query APIs `AccessDenied`, EC2-style APIs
/// `UnauthorizedOperation`/`AuthFailure`; bad or expired keys come back as
/// `UnrecognizedClientException`, `InvalidClientTokenId`, `ExpiredToken…` or a signature error.
const DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnauthorizedException",
    "AuthFailure",
    "NotAuthorized",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "MissingAuthenticationToken",
];

/// Whether an AWS error code means "this identity may not do that" (an authentication or
/// authorisation failure, exit code 4), not a problem with the request or the service.
pub fn is_denied_code(code: Option<&str>) -> bool {
    code.is_some_and(|code| DENIED_CODES.contains(&code))
}

#[cfg(test)]
mod tests {
    use super::is_denied_code;

    #[test]
    fn identity_and_permission_refusals_are_denials() {
        for code in ["AccessDeniedException", "AccessDenied", "UnauthorizedOperation", "ExpiredTokenException"] {
            assert!(is_denied_code(Some(code)), "{code}");
        }
    }

    #[test]
    fn other_service_errors_are_not_denials() {
        for code in [
            Some("RepositoryNotFoundException"),
            Some("LimitExceededException"),
            Some("ThrottlingException"),
            Some("InvalidParameterException"),
            Some("accessdenied"),
            None,
        ] {
            assert!(!is_denied_code(code), "{code:?}");
        }
    }
}
