//! The SQS queue the bucket's event notifications go to, through the official SDK: receive
//! with long polling, and delete. The ingestor learns of new CSV files from it.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, SdkError};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum SqsError {
    #[error("SQS queue URL {0:?} is not a URL")]
    BadQueueUrl(String),
    #[error("SQS {action} failed: {message}")]
    Request { action: &'static str, message: String },
}

impl SqsError {
    fn from_sdk<E>(action: &'static str, error: SdkError<E, HttpResponse>) -> Self
    where
        E: std::error::Error + 'static,
    {
        Self::Request { action, message: DisplayErrorContext(&error).to_string() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
}

#[derive(Debug, Clone)]
pub struct SqsClient {
    client: Client,
    queue_url: String,
}

impl SqsClient {
    /// A client for one queue. Requests go to the queue URL's host (the queue says where it
    /// lives, on AWS as on a local server); region and credentials are the SDK's.
    pub fn new(sdk: &SdkConfig, queue_url: &str) -> Result<Self, SqsError> {
        let bad = || SqsError::BadQueueUrl(queue_url.to_owned());
        let parsed: Url = queue_url.parse().map_err(|_| bad())?;
        if parsed.host_str().is_none() {
            return Err(bad());
        }
        let origin = parsed.origin().ascii_serialization();
        let config = aws_sdk_sqs::config::Builder::from(sdk).endpoint_url(origin).build();
        Ok(Self { client: Client::from_conf(config), queue_url: queue_url.to_owned() })
    }

    /// Waits up to `wait` (long polling, at most 20 s) for up to `max` messages (1–10).
    pub async fn receive(&self, max: u8, wait: Duration) -> Result<Vec<SqsMessage>, SqsError> {
        let wait_seconds = i32::try_from(wait.as_secs().min(20)).unwrap_or(20);
        let output = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(i32::from(max.clamp(1, 10)))
            .wait_time_seconds(wait_seconds)
            .send()
            .await
            .map_err(|error| SqsError::from_sdk("ReceiveMessage", error))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|message| SqsMessage {
                message_id: message.message_id.unwrap_or_default(),
                receipt_handle: message.receipt_handle.unwrap_or_default(),
                body: message.body.unwrap_or_default(),
            })
            .collect())
    }

    pub async fn delete(&self, receipt_handle: &str) -> Result<(), SqsError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|error| SqsError::from_sdk("DeleteMessage", error))?;
        Ok(())
    }
}
