//! What Cezbek does with S3 objects (put, streamed and ranged gets, list, conditional copy and
//! delete, presigned uploads, multipart reports), through the official SDK: its signing, its
//! retries and its time-outs.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::config::S3Config;
use crate::http::{Readiness, spawn_readiness_check};

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// S3 answered with an error status (404 missing, 412 a condition failed, 416 a range
    /// past the end…).
    #[error("S3 {operation} {key:?} answered {status}: {message}")]
    Status { operation: &'static str, key: String, status: u16, message: String },
    /// No answer: the request could not be built, signed (no credentials), sent or was not
    /// answered in time, after the SDK's retries.
    #[error("S3 {operation} {key:?} failed: {message}")]
    Request { operation: &'static str, key: String, message: String },
    #[error("S3 {operation} {key:?}: reading the object failed: {message}")]
    Body { operation: &'static str, key: String, message: String },
}

impl S3Error {
    fn from_sdk<E>(operation: &'static str, key: &str, error: SdkError<E, HttpResponse>) -> Self
    where
        E: std::error::Error + 'static,
    {
        let key = key.to_owned();
        let status = error.raw_response().map(|response| response.status().as_u16());
        let message = DisplayErrorContext(&error).to_string();
        match (status, &error) {
            (Some(status), SdkError::ServiceError(_)) => {
                Self::Status { operation, key, status, message }
            }
            // A HEAD's error has no body to parse: the status is all there is.
            (Some(status), SdkError::ResponseError(_)) if status >= 300 => {
                Self::Status { operation, key, status, message }
            }
            _ => Self::Request { operation, key, message },
        }
    }
}

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub etag: String,
    pub size: u64,
}

#[derive(Debug, Clone)]
pub struct S3Client {
    client: Client,
    bucket: String,
}

impl S3Client {
    /// A client for the configured bucket. `CEZBEK_S3_ENDPOINT`, when set, is where its
    /// requests (and its presigned URLs) go.
    pub fn new(sdk: &SdkConfig, config: &S3Config) -> Self {
        let mut builder = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(config.path_style)
            // Checksums only where S3 requires them: a presigned URL must not commit the
            // partner to a checksum of a body we have not seen, and the stack's S3 server
            // predates the newer defaults.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        Self { client: Client::from_conf(builder.build()), bucket: config.bucket.clone() }
    }

    /// A client from the configuration loaded by [`crate::aws::sdk_config`].
    pub async fn connect(config: &S3Config) -> Self {
        Self::new(&crate::aws::sdk_config(config).await, config)
    }

    pub fn bucket_name(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket; one that we already own counts as success.
    pub async fn create_bucket(&self) -> Result<(), S3Error> {
        match self.client.create_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|error| error.is_bucket_already_owned_by_you()) =>
            {
                Ok(())
            }
            Err(error) => Err(S3Error::from_sdk("create_bucket", "", error)),
        }
    }

    pub async fn put_object(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), S3Error> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|error| S3Error::from_sdk("put_object", key, error))?;
        Ok(())
    }

    /// An object written piece by piece: in parts of [`PART_BYTES`] (a multipart upload) once it
    /// outgrows one, so a report larger than memory is never held whole. Call
    /// [`ObjectWriter::finish`]; a writer dropped unfinished leaves an incomplete upload, which
    /// a bucket lifecycle rule removes.
    pub fn writer(&self, key: &str, content_type: &str) -> ObjectWriter<'_> {
        ObjectWriter {
            client: self,
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            buffer: Vec::new(),
            upload: None,
        }
    }

    /// Starts a download; read the body in chunks ([`ObjectBody::chunk`]) to keep memory flat.
    pub async fn get_object(&self, key: &str) -> Result<ObjectBody, S3Error> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| S3Error::from_sdk("get_object", key, error))?;
        let size = output.content_length().and_then(|length| u64::try_from(length).ok());
        Ok(ObjectBody { key: key.to_owned(), size, stream: output.body })
    }

    /// Streams one version of an object (`If-Match` its ETag) from a byte offset: how a file
    /// is resumed after a checkpoint, and never mixed with a newer upload under the same key.
    /// `None` when the offset is at (or past) the end, where S3 answers 416 to a range: a job
    /// whose last checkpoint reached the end of its file has nothing left to read.
    pub async fn get_object_from(
        &self,
        key: &str,
        etag: &str,
        offset: u64,
    ) -> Result<Option<ObjectBody>, S3Error> {
        let mut request =
            self.client.get_object().bucket(&self.bucket).key(key).if_match(format!("\"{etag}\""));
        if offset > 0 {
            request = request.range(format!("bytes={offset}-"));
        }
        match request.send().await.map_err(|error| S3Error::from_sdk("get_object", key, error)) {
            Ok(output) => {
                // A ranged answer names the whole object's size after the slash.
                let size = output
                    .content_range()
                    .and_then(|range| range.rsplit_once('/'))
                    .and_then(|(_, total)| total.parse().ok())
                    .or_else(|| {
                        let length = u64::try_from(output.content_length()?).ok()?;
                        Some(offset + length)
                    });
                Ok(Some(ObjectBody { key: key.to_owned(), size, stream: output.body }))
            }
            Err(S3Error::Status { status: 416, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Copies within the bucket (S3 has no rename: a move is copy then delete). With
    /// `source_etag`, only that version of the source is copied
    /// (`x-amz-copy-source-if-match`): S3 answers 412 when the key holds a newer upload.
    pub async fn copy_object(
        &self,
        from: &str,
        to: &str,
        source_etag: Option<&str>,
    ) -> Result<(), S3Error> {
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(copy_source(&self.bucket, from))
            .set_copy_source_if_match(source_etag.map(|etag| format!("\"{etag}\"")))
            .send()
            .await
            .map_err(|error| S3Error::from_sdk("copy_object", to, error))?;
        Ok(())
    }

    /// Deletes an object. With `etag`, only that version (`If-Match`): S3 answers 412 when the
    /// key holds a newer upload, which is then left alone.
    pub async fn delete_object(&self, key: &str, etag: Option<&str>) -> Result<(), S3Error> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_match(etag.map(|etag| format!("\"{etag}\"")))
            .send()
            .await
            .map_err(|error| S3Error::from_sdk("delete_object", key, error))?;
        Ok(())
    }

    /// Every object under `prefix`, following continuation tokens.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectSummary>, S3Error> {
        let mut objects = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(continuation.take())
                .send()
                .await
                .map_err(|error| S3Error::from_sdk("list_objects", prefix, error))?;
            objects.extend(page.contents().iter().map(|object| ObjectSummary {
                key: object.key().unwrap_or_default().to_owned(),
                etag: object.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                size: object.size().and_then(|size| u64::try_from(size).ok()).unwrap_or_default(),
            }));
            match page.next_continuation_token() {
                Some(token) if page.is_truncated() == Some(true) => {
                    continuation = Some(token.to_owned());
                }
                _ => return Ok(objects),
            }
        }
    }

    /// Keeps the `s3` readiness component current.
    pub fn watch_readiness(&self, readiness: &Readiness, shutdown: &CancellationToken) {
        let client = self.clone();
        spawn_readiness_check(readiness.clone(), "s3", shutdown.clone(), move || {
            let client = client.clone();
            async move { client.check().await }
        });
    }

    /// Readiness: the bucket exists and our credentials reach it.
    pub async fn check(&self) -> Result<(), String> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map(drop)
            .map_err(|error| S3Error::from_sdk("head_bucket", "", error).to_string())
    }

    /// A URL that lets its holder PUT one object until it expires (or until the temporary
    /// keys that signed it expire, whichever is first).
    pub async fn presign_put(&self, key: &str, ttl: Duration) -> Result<Url, S3Error> {
        let request_failed = |message: String| S3Error::Request {
            operation: "presign_put",
            key: key.to_owned(),
            message,
        };
        let presigning = PresigningConfig::expires_in(ttl)
            .map_err(|error| request_failed(DisplayErrorContext(&error).to_string()))?;
        let presigned = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|error| S3Error::from_sdk("presign_put", key, error))?;
        Url::parse(presigned.uri()).map_err(|error| request_failed(error.to_string()))
    }
}

/// The body of an object being downloaded.
#[derive(Debug)]
pub struct ObjectBody {
    key: String,
    /// The whole object's size, when S3 said.
    size: Option<u64>,
    stream: ByteStream,
}

impl ObjectBody {
    /// The whole object's size in bytes (not only the range being read), when S3 said.
    pub fn object_size(&self) -> Option<u64> {
        self.size
    }

    /// The next bytes as they arrive, or `None` at the end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, S3Error> {
        self.stream.try_next().await.map_err(|error| S3Error::Body {
            operation: "get_object",
            key: self.key.clone(),
            message: DisplayErrorContext(&error).to_string(),
        })
    }

    /// The whole body (small objects only).
    pub async fn bytes(self) -> Result<Bytes, S3Error> {
        let key = self.key;
        let collected = self.stream.collect().await.map_err(|error| S3Error::Body {
            operation: "get_object",
            key,
            message: DisplayErrorContext(&error).to_string(),
        })?;
        Ok(collected.into_bytes())
    }

    /// The whole body as text (small objects only); invalid UTF-8 is replaced.
    pub async fn text(self) -> Result<String, S3Error> {
        let bytes = self.bytes().await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// The size of a part of a multipart upload (S3 wants at least 5 MiB for all but the last).
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// See [`S3Client::writer`].
#[derive(Debug)]
pub struct ObjectWriter<'a> {
    client: &'a S3Client,
    key: String,
    content_type: String,
    buffer: Vec<u8>,
    /// Once the object outgrew one part: the upload's id and its parts so far.
    upload: Option<(String, Vec<CompletedPart>)>,
}

impl ObjectWriter<'_> {
    /// Appends bytes; a full part goes to S3 at once.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), S3Error> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= PART_BYTES {
            self.upload_part().await?;
        }
        Ok(())
    }

    /// Writes what is left and completes the object: one PUT when it never outgrew a part. A
    /// multipart upload that fails is aborted.
    pub async fn finish(mut self) -> Result<(), S3Error> {
        if self.upload.is_none() {
            let body = std::mem::take(&mut self.buffer);
            return self.client.put_object(&self.key, body, &self.content_type).await;
        }
        let completed = self.complete().await;
        if completed.is_err()
            && let Some((upload_id, _)) = &self.upload
        {
            self.abort(upload_id).await;
        }
        completed
    }

    async fn complete(&mut self) -> Result<(), S3Error> {
        if !self.buffer.is_empty() {
            self.upload_part().await?;
        }
        let Some((upload_id, parts)) = self.upload.take() else { return Ok(()) };
        let result = self
            .client
            .client
            .complete_multipart_upload()
            .bucket(&self.client.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => {
                // Kept so that `finish` can abort it.
                self.upload = Some((upload_id, Vec::new()));
                Err(S3Error::from_sdk("complete_multipart_upload", &self.key, error))
            }
        }
    }

    async fn upload_part(&mut self) -> Result<(), S3Error> {
        if self.upload.is_none() {
            let created = self
                .client
                .client
                .create_multipart_upload()
                .bucket(&self.client.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .send()
                .await
                .map_err(|error| S3Error::from_sdk("create_multipart_upload", &self.key, error))?;
            let upload_id = created.upload_id().unwrap_or_default().to_owned();
            self.upload = Some((upload_id, Vec::new()));
        }
        let Some((upload_id, parts)) = &mut self.upload else { return Ok(()) };
        let part_number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
        let body = std::mem::take(&mut self.buffer);
        let uploaded = self
            .client
            .client
            .upload_part()
            .bucket(&self.client.bucket)
            .key(&self.key)
            .upload_id(upload_id.as_str())
            .part_number(part_number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|error| S3Error::from_sdk("upload_part", &self.key, error))?;
        parts.push(
            CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(uploaded.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    async fn abort(&self, upload_id: &str) {
        let aborted = self
            .client
            .client
            .abort_multipart_upload()
            .bucket(&self.client.bucket)
            .key(&self.key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(error) = aborted {
            let error = S3Error::from_sdk("abort_multipart_upload", &self.key, error);
            tracing::warn!(%error, key = %self.key, "cannot abort a multipart upload");
        }
    }
}

/// Characters a copy source keeps as they are: RFC 3986's unreserved ones and the `/` between
/// the bucket and the key's segments. Everything else (`%`, `?`, `+`, spaces, non-ASCII) is
/// percent-encoded, as S3 requires of `x-amz-copy-source` (the SDK sends it as given).
const COPY_SOURCE_KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The copy source of an object: `bucket/key`, URL-encoded.
fn copy_source(bucket: &str, key: &str) -> String {
    let path = format!("{bucket}/{key}");
    percent_encoding::utf8_percent_encode(&path, COPY_SOURCE_KEEP).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_copy_source_is_url_encoded() {
        assert_eq!(super::copy_source("b", "incoming/TOKO/plain.csv"), "b/incoming/TOKO/plain.csv");
        assert_eq!(
            super::copy_source("b", "incoming/TOKO/50% off?.csv"),
            "b/incoming/TOKO/50%25%20off%3F.csv"
        );
        assert_eq!(
            super::copy_source("b", "incoming/TOKO/ü+&.csv"),
            "b/incoming/TOKO/%C3%BC%2B%26.csv"
        );
    }
}
