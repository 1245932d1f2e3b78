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
        None => crate::registry::error_chain(error),
    }
}
