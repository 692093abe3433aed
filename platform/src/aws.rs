//! The AWS SDK's shared configuration for the S3 and SQS clients: the SDK's standard chains
//! for credentials (environment `AWS_ACCESS_KEY_ID`…, profiles and SSO, web identity/IRSA, EKS
//! Pod Identity, ECS task roles, EC2 IMDSv2) and region (`AWS_REGION`, profile, IMDS), its
//! retries with back-off and its time-outs. `CEZBEK_S3_REGION` and `CEZBEK_S3_ACCESS_KEY` +
//! `CEZBEK_S3_SECRET_KEY` still work as documented aliases that take precedence.

use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::config::{Credentials, SharedCredentialsProvider};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::config::S3Config;

/// The region when neither the configuration, the environment, a profile nor the instance
/// metadata names one: S3 needs one to sign with.
const FALLBACK_REGION: &str = "us-east-1";
/// How long a TCP + TLS connection may take before the SDK retries elsewhere.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Loads the SDK configuration once per process (it may call IMDS or STS): clients for S3 and
/// SQS are built from it.
pub async fn sdk_config(config: &S3Config) -> SdkConfig {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .timeout_config(TimeoutConfig::builder().connect_timeout(CONNECT_TIMEOUT).build());
    // Unset, the loader asks the SDK's region chain, with our HTTP client for IMDS.
    if let Some(region) = &config.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(keys) = &config.static_keys {
        let credentials = Credentials::new(
            keys.access_key.clone(),
            keys.secret_key.clone(),
            None,
            None,
            "CEZBEK_S3_ACCESS_KEY",
        );
        loader = loader.credentials_provider(SharedCredentialsProvider::new(credentials));
    }
    let sdk = loader.load().await;
    if sdk.region().is_some() {
        return sdk;
    }
    sdk.into_builder().region(Region::from_static(FALLBACK_REGION)).build()
}
