//! AWS Signature Version 4 for the few AWS JSON API calls Cezbek makes (SQS). S3 requests are
//! signed by `rusty-s3`; an SDK would cost minutes of build time for two calls.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use url::Url;

type HmacSha256 = Hmac<Sha256>;

/// Who signs, and for which region and service.
#[derive(Clone)]
pub struct Signer {
    pub access_key: String,
    pub secret_key: String,
    /// Temporary (STS) keys come with a token, sent and signed as `x-amz-security-token`.
    pub session_token: Option<String>,
    pub region: String,
    pub service: String,
}

/// Without the secret key and the session token.
impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("access_key", &self.access_key)
            .field("secret_key", &"<redacted>")
            .field("session_token", &self.session_token.as_ref().map(|_| "<redacted>"))
            .field("region", &self.region)
            .field("service", &self.service)
            .finish()
    }
}

impl Signer {
    /// The headers to add to a request: `x-amz-date`, `authorization` and, with temporary
    /// keys, `x-amz-security-token`. `headers` are the other headers to sign (lowercase names);
    /// `host` is taken from the URL.
    pub fn sign(
        &self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        body: &[u8],
        at: DateTime<Utc>,
    ) -> Vec<(&'static str, String)> {
        let amz_date = at.format("%Y%m%dT%H%M%SZ").to_string();
        let date = at.format("%Y%m%d").to_string();
        let host = match (url.host_str(), url.port()) {
            (Some(host), Some(port)) => format!("{host}:{port}"),
            (Some(host), None) => host.to_owned(),
            _ => String::new(),
        };
        let mut signed: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
            .chain([("host".to_owned(), host), ("x-amz-date".to_owned(), amz_date.clone())])
            .chain(
                self.session_token
                    .iter()
                    .map(|token| ("x-amz-security-token".to_owned(), token.clone())),
            )
            .collect();
        signed.sort();
        let canonical_headers: String =
            signed.iter().map(|(name, value)| format!("{name}:{value}\n")).collect();
        let signed_names =
            signed.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>().join(";");
        let path = if url.path().is_empty() { "/" } else { url.path() };
        let canonical_request = format!(
            "{method}\n{path}\n{}\n{canonical_headers}\n{signed_names}\n{}",
            canonical_query(url),
            hex::encode(Sha256::digest(body))
        );
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical_request.as_bytes()))
        );
        let mut key = hmac(format!("AWS4{}", self.secret_key).as_bytes(), date.as_bytes());
        for part in [self.region.as_str(), self.service.as_str(), "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex::encode(hmac(&key, string_to_sign.as_bytes()));
        let authorization = format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_names}, Signature={signature}",
            self.access_key
        );
        let mut out = vec![("x-amz-date", amz_date), ("authorization", authorization)];
        if let Some(token) = &self.session_token {
            out.push(("x-amz-security-token", token.clone()));
        }
        out
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// Query parameters sorted by name, each name and value encoded as SigV4 wants (RFC 3986
/// unreserved characters kept, everything else `%XX`).
fn canonical_query(url: &Url) -> String {
    let mut pairs: Vec<(String, String)> =
        url.query_pairs().map(|(name, value)| (encode(&name), encode(&value))).collect();
    pairs.sort();
    pairs.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join("&")
}

fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn signs_like_botocore() {
        // Reference from botocore's SigV4Auth (dev/py has boto3) for the same request:
        // POST https://sqs.us-east-1.amazonaws.com/?b=2&a=1 with the JSON target headers,
        // at 2026-01-02T03:04:05Z, access key AKIDEXAMPLE, secret key "secret".
        let signer = Signer {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "secret".into(),
            session_token: None,
            region: "us-east-1".into(),
            service: "sqs".into(),
        };
        let url: Url = "https://sqs.us-east-1.amazonaws.com/?b=2&a=1".parse().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().unwrap();
        let headers = signer.sign(
            "POST",
            &url,
            &[
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", "AmazonSQS.ReceiveMessage"),
            ],
            br#"{"QueueUrl":"q"}"#,
            at,
        );
        assert_eq!(headers[0], ("x-amz-date", "20260102T030405Z".to_owned()));
        assert_eq!(
            headers[1].1,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260102/us-east-1/sqs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=169aaab6e92014c8798dc8f4dba5d5aa1c577583db8bff5fa1b256ac678b797c"
        );
    }

    #[test]
    fn signs_a_session_token_like_botocore() {
        // botocore's SigV4Auth, same request, temporary keys ASIAEXAMPLE/"secret"/"FQoGtoken".
        let signer = Signer {
            access_key: "ASIAEXAMPLE".into(),
            secret_key: "secret".into(),
            session_token: Some("FQoGtoken".into()),
            region: "us-east-1".into(),
            service: "sqs".into(),
        };
        let url: Url = "https://sqs.us-east-1.amazonaws.com/?b=2&a=1".parse().unwrap();
        let at = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().unwrap();
        let headers = signer.sign(
            "POST",
            &url,
            &[
                ("content-type", "application/x-amz-json-1.0"),
                ("x-amz-target", "AmazonSQS.ReceiveMessage"),
            ],
            br#"{"QueueUrl":"q"}"#,
            at,
        );
        assert_eq!(
            headers[1].1,
            "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20260102/us-east-1/sqs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=60fffc3b9fea66d1b40521901688101691ab18ff936d351ced1ac6d5276070e8"
        );
        assert_eq!(headers[2], ("x-amz-security-token", "FQoGtoken".to_owned()));
    }
}
