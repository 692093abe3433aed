//! Finding files to ingest: the bucket's event notifications on an SQS queue (fast), and a
//! periodic listing of `incoming/` (catches whatever a notification missed, and jobs a dead
//! instance left behind). Both feed one queue of object versions; an object already queued or
//! being ingested here is not queued again, and the job table makes each version's ingestion
//! happen once across instances.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;

use cezbek_platform::CancellationToken;
use cezbek_platform::retry;
use cezbek_platform::sqs::SqsClient;

use crate::files::{self, Context, FileError, INCOMING};
use crate::jobs::ObjectRef;

/// Objects queued or in progress on this instance.
#[derive(Debug, Clone, Default)]
pub struct Queued(Arc<Mutex<HashSet<ObjectRef>>>);

impl Queued {
    fn insert(&self, object: &ObjectRef) -> bool {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(object.clone())
    }

    fn remove(&self, object: &ObjectRef) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(object);
    }
}

/// Sends an object to the workers unless it is already on its way.
async fn offer(queue: &mpsc::Sender<ObjectRef>, queued: &Queued, object: ObjectRef) {
    if queued.insert(&object) {
        // The receiver lives as long as the workers; a closed queue means shutdown.
        let _ = queue.send(object).await;
    }
}

/// Lists `incoming/` now and then every `every`.
pub async fn list_periodically(
    context: Context,
    queue: mpsc::Sender<ObjectRef>,
    queued: Queued,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match context.s3.list_objects(INCOMING).await {
            Ok(objects) => {
                for object in objects {
                    let object = ObjectRef {
                        bucket: context.s3.bucket_name().to_owned(),
                        key: object.key,
                        etag: object.etag,
                    };
                    offer(&queue, &queued, object).await;
                }
            }
            Err(error) => tracing::warn!(%error, "cannot list incoming/; will try again"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// The parts of an S3 event notification we read.
#[derive(Debug, Deserialize)]
struct Notification {
    #[serde(rename = "Records", default)]
    records: Vec<NotificationRecord>,
}

#[derive(Debug, Deserialize)]
struct NotificationRecord {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: NotificationS3,
}

#[derive(Debug, Deserialize)]
struct NotificationS3 {
    bucket: NotificationBucket,
    object: NotificationObject,
}

#[derive(Debug, Deserialize)]
struct NotificationBucket {
    name: String,
}

#[derive(Debug, Deserialize)]
struct NotificationObject {
    key: String,
    #[serde(rename = "eTag", default)]
    etag: Option<String>,
}

/// The objects an SQS message announces. S3 writes keys URL-encoded (`+` for a space).
pub fn announced_objects(body: &str, bucket: &str) -> Vec<ObjectRef> {
    let Ok(notification) = serde_json::from_str::<Notification>(body) else {
        return Vec::new();
    };
    notification
        .records
        .into_iter()
        .filter(|record| record.event_name.starts_with("ObjectCreated"))
        .filter(|record| record.s3.bucket.name == bucket)
        .filter_map(|record| {
            let key = decode_key(&record.s3.object.key);
            let etag = record.s3.object.etag?.trim_matches('"').to_owned();
            key.starts_with(INCOMING).then(|| ObjectRef { bucket: bucket.to_owned(), key, etag })
        })
        .collect()
}

fn decode_key(raw: &str) -> String {
    url::form_urlencoded::parse(format!("k={raw}").as_bytes())
        .next()
        .map_or_else(|| raw.to_owned(), |(_, value)| value.into_owned())
}

/// Receives bucket notifications until shutdown. A message is deleted once its objects are
/// queued; if this instance dies before ingesting them, the listing finds them.
pub async fn follow_notifications(
    sqs: SqsClient,
    bucket: String,
    queue: mpsc::Sender<ObjectRef>,
    queued: Queued,
    shutdown: CancellationToken,
) {
    let (first, cap) = (Duration::from_millis(500), Duration::from_secs(30));
    let mut delays = retry::delays(first, cap);
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = sqs.receive(10, Duration::from_secs(10)) => received,
        };
        let messages = match received {
            Ok(messages) => {
                delays = retry::delays(first, cap);
                messages
            }
            Err(error) => {
                let backoff = retry::next_delay(&mut delays, cap);
                tracing::warn!(%error, retry_in = ?backoff, "cannot receive bucket notifications");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                continue;
            }
        };
        for message in messages {
            for object in announced_objects(&message.body, &bucket) {
                tracing::debug!(key = %object.key, "announced by a bucket notification");
                offer(&queue, &queued, object).await;
            }
            if let Err(error) = sqs.delete(&message.receipt_handle).await {
                tracing::warn!(%error, "cannot delete a notification; it will come again");
            }
        }
    }
}

/// Ingests queued objects one at a time; run several for files in parallel.
pub async fn work(
    context: Context,
    queue: Arc<tokio::sync::Mutex<mpsc::Receiver<ObjectRef>>>,
    queued: Queued,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = async { queue.lock().await.recv().await } => next,
        };
        let Some(object) = next else { return };
        match files::ingest(&context, &object, &shutdown).await {
            Ok(()) => {}
            Err(FileError::Shutdown) => {
                tracing::info!(key = %object.key, "stopped mid-file; the checkpoint is saved");
            }
            Err(error) => {
                tracing::error!(%error, key = %object.key, "ingestion stopped; it resumes from its checkpoint at the next listing");
            }
        }
        queued.remove(&object);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_name_decoded_keys_of_our_bucket() {
        let body = r#"{"Records":[
            {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"cezbek"},
              "object":{"key":"incoming/TOKO/march+2026%2C+week+1.csv","eTag":"abc"}}},
            {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"other"},
              "object":{"key":"incoming/TOKO/x.csv","eTag":"abc"}}},
            {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"cezbek"},
              "object":{"key":"incoming/TOKO/y.csv","eTag":"abc"}}},
            {"eventName":"ObjectCreated:Copy","s3":{"bucket":{"name":"cezbek"},
              "object":{"key":"processed/TOKO/z.csv","eTag":"abc"}}}
        ]}"#;
        assert_eq!(
            announced_objects(body, "cezbek"),
            vec![ObjectRef {
                bucket: "cezbek".into(),
                key: "incoming/TOKO/march 2026, week 1.csv".into(),
                etag: "abc".into(),
            }]
        );
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"cezbek"}"#;
        assert!(announced_objects(test_event, "cezbek").is_empty());
        assert!(announced_objects("not json", "cezbek").is_empty());
    }
}
