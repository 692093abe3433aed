//! A minimal SQS client (AWS JSON 1.0 protocol, SigV4): receive with long polling, and delete.
//! The ingestor learns of new CSV files from the bucket's event notifications on a queue.

use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::aws_credentials::{CredentialError, CredentialProvider};
use crate::config::S3Config;
use crate::sigv4::Signer;

#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    #[error("SQS queue URL {0:?} is not a URL")]
    BadQueueUrl(String),
    #[error("SQS {action} failed: {source}")]
    Transport { action: &'static str, source: reqwest::Error },
    #[error("SQS {action} answered {status}: {body}")]
    Status { action: &'static str, status: u16, body: String },
    #[error("SQS {action} answered unreadable JSON: {reason}")]
    BadResponse { action: &'static str, reason: String },
    #[error("SQS credentials: {0}")]
    Credentials(#[from] CredentialError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct SqsClient {
    queue_url: String,
    endpoint: Url,
    region: String,
    credentials: CredentialProvider,
    http: reqwest::Client,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveResponse {
    #[serde(default)]
    messages: Vec<ReceivedMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceivedMessage {
    message_id: String,
    receipt_handle: String,
    body: String,
}

impl SqsClient {
    /// A client for one queue; credentials and region are the S3 ones (one IAM identity).
    pub fn new(queue_url: &str, s3: &S3Config) -> Result<Self, SqsError> {
        let bad = || SqsError::BadQueueUrl(queue_url.to_owned());
        let parsed: Url = queue_url.parse().map_err(|_| bad())?;
        // The JSON protocol posts to the service root; the queue is named in the body.
        let mut endpoint = parsed.clone();
        endpoint.set_path("/");
        endpoint.set_query(None);
        if parsed.host_str().is_none() {
            return Err(bad());
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|source| SqsError::Transport { action: "client", source })?;
        Ok(Self {
            queue_url: queue_url.to_owned(),
            endpoint,
            region: s3.region.clone(),
            credentials: CredentialProvider::new(s3.credentials.clone()),
            http,
        })
    }

    /// Waits up to `wait` (long polling, at most 20 s) for up to `max` messages (1–10).
    pub async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<SqsMessage>, SqsError> {
        let body = serde_json::json!({
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": max.clamp(1, 10),
            "WaitTimeSeconds": wait.as_secs().min(20),
        });
        let text = self.call("ReceiveMessage", &body, wait + Duration::from_secs(10)).await?;
        let response: ReceiveResponse = serde_json::from_str(&text).map_err(|error| {
            SqsError::BadResponse { action: "ReceiveMessage", reason: error.to_string() }
        })?;
        Ok(response
            .messages
            .into_iter()
            .map(|message| SqsMessage {
                message_id: message.message_id,
                receipt_handle: message.receipt_handle,
                body: message.body,
            })
            .collect())
    }

    pub async fn delete(&self, receipt_handle: &str) -> Result<(), SqsError> {
        let body = serde_json::json!({
            "QueueUrl": self.queue_url,
            "ReceiptHandle": receipt_handle,
        });
        self.call("DeleteMessage", &body, Duration::from_secs(10)).await.map(drop)
    }

    async fn call(
        &self,
        action: &'static str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<String, SqsError> {
        let payload = body.to_string().into_bytes();
        let target = format!("AmazonSQS.{action}");
        let content_type = "application/x-amz-json-1.0";
        let credentials = self.credentials.current().await?;
        let signer = Signer {
            access_key: credentials.access_key,
            secret_key: credentials.secret_key,
            session_token: credentials.session_token,
            region: self.region.clone(),
            service: "sqs".into(),
        };
        let signed = signer.sign(
            "POST",
            &self.endpoint,
            &[("content-type", content_type), ("x-amz-target", &target)],
            &payload,
            chrono::Utc::now(),
        );
        let mut request = self
            .http
            .post(self.endpoint.clone())
            .timeout(timeout)
            .header("content-type", content_type)
            .header("x-amz-target", &target)
            .body(payload);
        for (name, value) in signed {
            request = request.header(name, value);
        }
        let response =
            request.send().await.map_err(|source| SqsError::Transport { action, source })?;
        let status = response.status();
        let text =
            response.text().await.map_err(|source| SqsError::Transport { action, source })?;
        if !status.is_success() {
            return Err(SqsError::Status { action, status: status.as_u16(), body: text });
        }
        Ok(text)
    }
}
