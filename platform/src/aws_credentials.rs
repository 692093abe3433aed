//! AWS credentials for the S3 and SQS clients: static keys (MinIO, the local stack, an IAM
//! user) or, on EKS, IAM roles for service accounts (IRSA): the pod's projected service-account
//! token (`AWS_WEB_IDENTITY_TOKEN_FILE`) is exchanged with STS `AssumeRoleWithWebIdentity` for
//! short-lived keys of `AWS_ROLE_ARN`, refreshed before they expire. The token file is read
//! again on every exchange because the kubelet rotates it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

/// Keys are renewed this long before STS says they expire, so no request is signed with keys
/// that die in flight.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
const STS_TIMEOUT: Duration = Duration::from_secs(10);

/// Where keys come from, as configured.
#[derive(Clone, PartialEq, Eq)]
pub enum CredentialSource {
    Static { access_key: String, secret_key: String },
    WebIdentity { role_arn: String, token_file: PathBuf, sts_endpoint: String },
}

/// Without the secret key: configurations are printed when a service starts or fails.
impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Static { access_key, .. } => f
                .debug_struct("Static")
                .field("access_key", access_key)
                .field("secret_key", &"<redacted>")
                .finish(),
            Self::WebIdentity { role_arn, token_file, sts_endpoint } => f
                .debug_struct("WebIdentity")
                .field("role_arn", role_arn)
                .field("token_file", token_file)
                .field("sts_endpoint", sts_endpoint)
                .finish(),
        }
    }
}

/// One set of keys; `session_token` is present for temporary (STS) keys.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

/// Without the secret key and the session token.
impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the web identity token {path:?}: {source}")]
    TokenFile { path: PathBuf, source: std::io::Error },
    #[error("STS AssumeRoleWithWebIdentity at {endpoint} failed: {source}")]
    Transport { endpoint: String, source: reqwest::Error },
    #[error("STS AssumeRoleWithWebIdentity answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("STS AssumeRoleWithWebIdentity answered without {missing}")]
    BadResponse { missing: &'static str },
}

/// Temporary keys and when STS says they expire.
type Expiring = (AwsCredentials, DateTime<Utc>);

/// Hands out current keys; cheap to clone (clones share the cache).
#[derive(Debug, Clone)]
pub struct CredentialProvider {
    source: CredentialSource,
    cached: Arc<Mutex<Option<Expiring>>>,
    http: reqwest::Client,
}

impl CredentialProvider {
    pub fn new(source: CredentialSource) -> Self {
        Self { source, cached: Arc::new(Mutex::new(None)), http: reqwest::Client::new() }
    }

    /// Keys valid for at least a few more minutes. Concurrent callers wait for one exchange.
    pub async fn current(&self) -> Result<AwsCredentials, CredentialError> {
        let (role_arn, token_file, sts_endpoint) = match &self.source {
            CredentialSource::Static { access_key, secret_key } => {
                return Ok(AwsCredentials {
                    access_key: access_key.clone(),
                    secret_key: secret_key.clone(),
                    session_token: None,
                });
            }
            CredentialSource::WebIdentity { role_arn, token_file, sts_endpoint } => {
                (role_arn, token_file, sts_endpoint)
            }
        };
        let mut cached = self.cached.lock().await;
        if let Some((credentials, expires_at)) = cached.as_ref()
            && still_fresh(*expires_at, Utc::now())
        {
            return Ok(credentials.clone());
        }
        let (credentials, expires_at) =
            self.assume_role(role_arn, token_file, sts_endpoint).await?;
        tracing::info!(role_arn, %expires_at, "assumed role with the web identity token");
        *cached = Some((credentials.clone(), expires_at));
        Ok(credentials)
    }

    async fn assume_role(
        &self,
        role_arn: &str,
        token_file: &PathBuf,
        sts_endpoint: &str,
    ) -> Result<Expiring, CredentialError> {
        let token = tokio::fs::read_to_string(token_file)
            .await
            .map_err(|source| CredentialError::TokenFile { path: token_file.clone(), source })?;
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role_arn),
            ("RoleSessionName", "cezbek"),
            ("WebIdentityToken", token.trim()),
        ];
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let transport =
            |source| CredentialError::Transport { endpoint: sts_endpoint.to_owned(), source };
        // The token is the proof of identity: this one STS call is not signed.
        let response = self
            .http
            .post(sts_endpoint)
            .timeout(STS_TIMEOUT)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body = response.text().await.map_err(transport)?;
        if !status.is_success() {
            let message = xml_text(&body, "Message").unwrap_or(&body).to_owned();
            return Err(CredentialError::Refused { status: status.as_u16(), message });
        }
        parse_assume_role_response(&body)
    }
}

fn still_fresh(expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let margin = chrono::Duration::from_std(REFRESH_MARGIN).unwrap_or_default();
    expires_at - margin > now
}

fn parse_assume_role_response(body: &str) -> Result<Expiring, CredentialError> {
    let field = |tag: &'static str| {
        xml_text(body, tag).map(str::to_owned).ok_or(CredentialError::BadResponse { missing: tag })
    };
    let expiration = field("Expiration")?;
    let expires_at = DateTime::parse_from_rfc3339(&expiration)
        .map_err(|_| CredentialError::BadResponse { missing: "a valid Expiration" })?
        .with_timezone(&Utc);
    let credentials = AwsCredentials {
        access_key: field("AccessKeyId")?,
        secret_key: field("SecretAccessKey")?,
        session_token: Some(field("SessionToken")?),
    };
    Ok((credentials, expires_at))
}

/// The text of the first `<tag>…</tag>`; STS answers are flat enough for this, and the values
/// (keys, base64 tokens, timestamps) never contain XML escapes.
fn xml_text<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].trim())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const ANSWER: &str = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>\
        <Credentials><AccessKeyId>ASIAEXAMPLE</AccessKeyId><SecretAccessKey>s3cr/t+</SecretAccessKey>\
        <SessionToken>FQoG==</SessionToken><Expiration>2026-11-21T10:58:01.066444Z</Expiration>\
        </Credentials></AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";

    #[test]
    fn reads_the_keys_and_expiry_sts_returns() {
        let (credentials, expires_at) = parse_assume_role_response(ANSWER).unwrap();
        assert_eq!(credentials.access_key, "ASIAEXAMPLE");
        assert_eq!(credentials.secret_key, "s3cr/t+");
        assert_eq!(credentials.session_token.as_deref(), Some("FQoG=="));
        assert_eq!(expires_at.timestamp(), 1_795_258_681);
    }

    #[test]
    fn an_answer_without_a_field_names_it() {
        let error = parse_assume_role_response(&ANSWER.replace("SessionToken", "Other"))
            .unwrap_err()
            .to_string();
        assert!(error.ends_with("without SessionToken"), "{error}");
    }

    #[test]
    fn keys_are_renewed_five_minutes_before_they_expire() {
        let expires_at = Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).single().unwrap();
        let at = |minute, second| Utc.with_ymd_and_hms(2026, 11, 21, 11, minute, second).unwrap();
        assert!(still_fresh(expires_at, at(54, 59)));
        assert!(!still_fresh(expires_at, at(55, 0)));
        assert!(!still_fresh(expires_at, at(59, 0)));
    }
}
