//! A small S3 client: requests are signed with SigV4 by `rusty-s3` and sent with `reqwest`.
//! It covers what Cezbek does with objects (put, streamed get, list, copy, delete, presigned
//! upload URLs) without the build weight of a full SDK.

use std::time::Duration;

use rusty_s3::actions::{ListObjectsV2, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use crate::aws_credentials::{CredentialError, CredentialProvider};
use url::Url;

use tokio_util::sync::CancellationToken;

use crate::config::S3Config;
use crate::http::{Readiness, spawn_readiness_check};

/// How long the URL of one of our own requests stays valid: just long enough to send it.
const REQUEST_TTL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("S3 endpoint {endpoint:?} or bucket {bucket:?} is not usable")]
    BadEndpoint { endpoint: String, bucket: String },
    #[error("S3 request {operation} {key:?} failed: {source}")]
    Transport { operation: &'static str, key: String, source: reqwest::Error },
    #[error("S3 {operation} {key:?} answered {status}: {body}")]
    Status { operation: &'static str, key: String, status: u16, body: String },
    #[error("S3 list of {prefix:?} answered unreadable XML: {reason}")]
    BadListing { prefix: String, reason: String },
    #[error("S3 credentials: {0}")]
    Credentials(#[from] CredentialError),
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
    bucket: Bucket,
    credentials: CredentialProvider,
    http: reqwest::Client,
}

impl S3Client {
    pub fn new(config: &S3Config) -> Result<Self, S3Error> {
        let bad = || S3Error::BadEndpoint {
            endpoint: config.endpoint.clone(),
            bucket: config.bucket.clone(),
        };
        let endpoint: Url = config.endpoint.parse().map_err(|_| bad())?;
        let style = if config.path_style { UrlStyle::Path } else { UrlStyle::VirtualHost };
        let bucket = Bucket::new(endpoint, style, config.bucket.clone(), config.region.clone())
            .map_err(|_| bad())?;
        let credentials = CredentialProvider::new(config.credentials.clone());
        let http =
            reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).build().map_err(
                |source| S3Error::Transport { operation: "client", key: String::new(), source },
            )?;
        Ok(Self { bucket, credentials, http })
    }

    pub fn bucket_name(&self) -> &str {
        self.bucket.name()
    }

    /// Creates the bucket; one that we already own counts as success.
    pub async fn create_bucket(&self) -> Result<(), S3Error> {
        let credentials = self.signing_credentials().await?;
        let url = self.bucket.create_bucket(&credentials).sign(REQUEST_TTL);
        // S3 servers want a Content-Length even on a bodiless PUT.
        let response = self
            .send(
                "create_bucket",
                "",
                self.http.put(url).header(reqwest::header::CONTENT_LENGTH, 0),
            )
            .await;
        match response {
            Err(S3Error::Status { status: 409, ref body, .. })
                if body.contains("BucketAlreadyOwnedByYou") =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    pub async fn put_object(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> Result<(), S3Error> {
        let credentials = self.signing_credentials().await?;
        let url = self.bucket.put_object(Some(&credentials), key).sign(REQUEST_TTL);
        let request =
            self.http.put(url).header(reqwest::header::CONTENT_TYPE, content_type).body(body);
        self.send("put_object", key, request).await.map(drop)
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

    /// Starts a download; read the body in chunks (`Response::chunk`) to keep memory flat.
    pub async fn get_object(&self, key: &str) -> Result<reqwest::Response, S3Error> {
        let credentials = self.signing_credentials().await?;
        let url = self.bucket.get_object(Some(&credentials), key).sign(REQUEST_TTL);
        self.send("get_object", key, self.http.get(url)).await
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
    ) -> Result<Option<reqwest::Response>, S3Error> {
        let credentials = self.signing_credentials().await?;
        let url = self.bucket.get_object(Some(&credentials), key).sign(REQUEST_TTL);
        let mut request =
            self.http.get(url).header(reqwest::header::IF_MATCH, format!("\"{etag}\""));
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        match self.send("get_object", key, request).await {
            Ok(response) => Ok(Some(response)),
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
        let credentials = self.signing_credentials().await?;
        let url = self.bucket.put_object(Some(&credentials), to).sign(REQUEST_TTL);
        let mut request = self
            .http
            .put(url)
            .header("x-amz-copy-source", copy_source(self.bucket.name(), from))
            .header(reqwest::header::CONTENT_LENGTH, 0);
        if let Some(etag) = source_etag {
            request = request.header("x-amz-copy-source-if-match", format!("\"{etag}\""));
        }
        self.send("copy_object", to, request).await.map(drop)
    }

    /// Deletes an object. With `etag`, only that version (`If-Match`): S3 answers 412 when the
    /// key holds a newer upload, which is then left alone.
    pub async fn delete_object(&self, key: &str, etag: Option<&str>) -> Result<(), S3Error> {
        let credentials = self.signing_credentials().await?;
        let url = self.bucket.delete_object(Some(&credentials), key).sign(REQUEST_TTL);
        let mut request = self.http.delete(url);
        if let Some(etag) = etag {
            request = request.header(reqwest::header::IF_MATCH, format!("\"{etag}\""));
        }
        self.send("delete_object", key, request).await.map(drop)
    }

    /// Every object under `prefix`, following continuation tokens.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ObjectSummary>, S3Error> {
        let mut objects = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let credentials = self.signing_credentials().await?;
            let mut action = self.bucket.list_objects_v2(Some(&credentials));
            action.with_prefix(prefix);
            if let Some(token) = &continuation {
                action.with_continuation_token(token.clone());
            }
            let url = action.sign(REQUEST_TTL);
            let response = self.send("list_objects", prefix, self.http.get(url)).await?;
            let text = response.text().await.map_err(|source| S3Error::Transport {
                operation: "list_objects",
                key: prefix.to_owned(),
                source,
            })?;
            let page = ListObjectsV2::parse_response(&text).map_err(|error| {
                S3Error::BadListing { prefix: prefix.to_owned(), reason: error.to_string() }
            })?;
            objects.extend(page.contents.into_iter().map(|object| ObjectSummary {
                key: object.key,
                etag: object.etag.unwrap_or_default().trim_matches('"').to_owned(),
                size: object.size.unwrap_or_default(),
            }));
            match page.next_continuation_token {
                Some(token) => continuation = Some(token),
                None => return Ok(objects),
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
        let credentials = self.signing_credentials().await.map_err(|error| error.to_string())?;
        let url = self.bucket.head_bucket(Some(&credentials)).sign(REQUEST_TTL);
        self.send("head_bucket", "", self.http.head(url))
            .await
            .map(drop)
            .map_err(|error| error.to_string())
    }

    /// A URL that lets its holder PUT one object until it expires (or until the temporary
    /// keys that signed it expire, whichever is first).
    pub async fn presign_put(&self, key: &str, ttl: Duration) -> Result<Url, S3Error> {
        let credentials = self.signing_credentials().await?;
        Ok(self.bucket.put_object(Some(&credentials), key).sign(ttl))
    }

    async fn signing_credentials(&self) -> Result<Credentials, S3Error> {
        let current = self.credentials.current().await?;
        Ok(match current.session_token {
            Some(token) => {
                Credentials::new_with_token(current.access_key, current.secret_key, token)
            }
            None => Credentials::new(current.access_key, current.secret_key),
        })
    }

    async fn send(
        &self,
        operation: &'static str,
        key: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, S3Error> {
        let response = request.send().await.map_err(|source| S3Error::Transport {
            operation,
            key: key.to_owned(),
            source,
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let body = response.text().await.unwrap_or_default();
        Err(S3Error::Status { operation, key: key.to_owned(), status: status.as_u16(), body })
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
    /// Once the object outgrew one part: the upload's id and the ETags of its parts so far.
    upload: Option<(String, Vec<String>)>,
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
        let Some((upload_id, etags)) = &self.upload else { return Ok(()) };
        let credentials = self.client.signing_credentials().await?;
        let action = self.client.bucket.complete_multipart_upload(
            Some(&credentials),
            &self.key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(REQUEST_TTL);
        let request = self.client.http.post(url).body(action.body());
        self.client.send("complete_multipart_upload", &self.key, request).await.map(drop)
    }

    async fn upload_part(&mut self) -> Result<(), S3Error> {
        if self.upload.is_none() {
            let credentials = self.client.signing_credentials().await?;
            let url = self
                .client
                .bucket
                .create_multipart_upload(Some(&credentials), &self.key)
                .sign(REQUEST_TTL);
            let request = self
                .client
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, &self.content_type);
            let response = self.client.send("create_multipart_upload", &self.key, request).await?;
            let text = response.text().await.map_err(|source| S3Error::Transport {
                operation: "create_multipart_upload",
                key: self.key.clone(),
                source,
            })?;
            let created = rusty_s3::actions::CreateMultipartUpload::parse_response(&text).map_err(
                |error| S3Error::Status {
                    operation: "create_multipart_upload",
                    key: self.key.clone(),
                    status: 200,
                    body: format!("unreadable answer ({error}): {text}"),
                },
            )?;
            self.upload = Some((created.upload_id().to_owned(), Vec::new()));
        }
        let Some((upload_id, etags)) = &mut self.upload else { return Ok(()) };
        let part_number = u16::try_from(etags.len() + 1).map_err(|_| S3Error::Status {
            operation: "upload_part",
            key: self.key.clone(),
            status: 400,
            body: "more than 65535 parts".into(),
        })?;
        let credentials = self.client.signing_credentials().await?;
        let url = self
            .client
            .bucket
            .upload_part(Some(&credentials), &self.key, part_number, upload_id)
            .sign(REQUEST_TTL);
        let body = std::mem::take(&mut self.buffer);
        let request = self.client.http.put(url).body(body);
        let response = self.client.send("upload_part", &self.key, request).await?;
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        etags.push(etag);
        Ok(())
    }

    async fn abort(&self, upload_id: &str) {
        let Ok(credentials) = self.client.signing_credentials().await else { return };
        let url = self
            .client
            .bucket
            .abort_multipart_upload(Some(&credentials), &self.key, upload_id)
            .sign(REQUEST_TTL);
        if let Err(error) = self
            .client
            .send("abort_multipart_upload", &self.key, self.client.http.delete(url))
            .await
        {
            tracing::warn!(%error, key = %self.key, "cannot abort a multipart upload");
        }
    }
}

/// Characters a copy source keeps as they are: RFC 3986's unreserved ones and the `/` between
/// the bucket and the key's segments. Everything else (`%`, `?`, `+`, spaces, non-ASCII) is
/// percent-encoded, as S3 requires of `x-amz-copy-source`.
const COPY_SOURCE_KEEP: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The `x-amz-copy-source` header of an object: `/bucket/key`, URL-encoded.
fn copy_source(bucket: &str, key: &str) -> String {
    let path = format!("/{bucket}/{key}");
    percent_encoding::utf8_percent_encode(&path, COPY_SOURCE_KEEP).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_copy_source_is_url_encoded() {
        assert_eq!(
            super::copy_source("b", "incoming/TOKO/plain.csv"),
            "/b/incoming/TOKO/plain.csv"
        );
        assert_eq!(
            super::copy_source("b", "incoming/TOKO/50% off?.csv"),
            "/b/incoming/TOKO/50%25%20off%3F.csv"
        );
        assert_eq!(
            super::copy_source("b", "incoming/TOKO/ü+&.csv"),
            "/b/incoming/TOKO/%C3%BC%2B%26.csv"
        );
    }
}
