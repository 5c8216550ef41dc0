//! Incomplete S3 multipart uploads: listing and aborting what a killed run left behind.
//!
//! A file larger than one part goes up as a multipart upload that becomes visible only when
//! completed, so a run killed mid-file leaves nothing visible — but the uploaded parts stay
//! stored (and billed) until someone aborts the upload. `object_store` can abort only uploads
//! it still holds a handle to and has no listing call, so this module speaks the two S3 calls
//! itself (`ListMultipartUploads`, `AbortMultipartUpload`), signed with `object_store`'s own
//! SigV4 signer and the same credentials and endpoint as the sink. The pipeline calls it at
//! start, under the run lease, for its own tables' key prefixes only. A bucket lifecycle rule
//! (`AbortIncompleteMultipartUpload`) remains the backstop for a sink that is never run again.

use std::sync::Arc;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, AwsAuthorizer};
use object_store::client::{HttpRequest, HttpRequestBody};

use super::store_error::StoreError;

/// One upload started and never completed nor aborted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The object key it would create.
    pub key: String,
    /// The server's id of the upload.
    pub upload_id: String,
    /// When it was started, as the server wrote it (ISO 8601).
    pub initiated: String,
}

/// Lists and aborts multipart uploads in the sink's bucket.
#[derive(Debug, Clone)]
pub struct UploadJanitor {
    s3: Arc<AmazonS3>,
    /// `https://endpoint/bucket` (path style) or the virtual-hosted bucket URL.
    bucket_url: url::Url,
    region: String,
    sign_payload: bool,
    http: reqwest::Client,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListResult {
    #[serde(default)]
    upload: Vec<UploadXml>,
    #[serde(default)]
    is_truncated: bool,
    next_key_marker: Option<String>,
    next_upload_id_marker: Option<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UploadXml {
    key: String,
    upload_id: String,
    #[serde(default)]
    initiated: String,
}

impl UploadJanitor {
    /// A janitor for the bucket `builder` was configured with (before `build`), talking
    /// through the built store's credentials.
    pub fn new(builder: &AmazonS3Builder, s3: Arc<AmazonS3>) -> Result<UploadJanitor, String> {
        let get = |k: AmazonS3ConfigKey| builder.get_config_value(&k);
        let bucket = get(AmazonS3ConfigKey::Bucket).ok_or("no bucket")?;
        let region = get(AmazonS3ConfigKey::Region).unwrap_or_else(|| "us-east-1".into());
        let virtual_hosted =
            get(AmazonS3ConfigKey::VirtualHostedStyleRequest).is_some_and(|v| v == "true");
        let allow_http = get(AmazonS3ConfigKey::Client(
            object_store::ClientConfigKey::AllowHttp,
        ))
        .is_some_and(|v| v == "true");
        let unsigned = get(AmazonS3ConfigKey::UnsignedPayload).is_some_and(|v| v == "true");
        // The same rule as `AmazonS3Builder::build`: a given endpoint is the bucket URL in
        // virtual-hosted style, and gets `/bucket` appended in path style.
        let bucket_url = match (get(AmazonS3ConfigKey::Endpoint), virtual_hosted) {
            (Some(e), true) => e,
            (Some(e), false) => format!("{}/{bucket}", e.trim_end_matches('/')),
            (None, true) => format!("https://{bucket}.s3.{region}.amazonaws.com"),
            (None, false) => format!("https://s3.{region}.amazonaws.com/{bucket}"),
        };
        let bucket_url =
            url::Url::parse(&bucket_url).map_err(|e| format!("bucket URL {bucket_url}: {e}"))?;
        if bucket_url.scheme() == "http" && !allow_http {
            return Err(format!(
                "{bucket_url} is plain HTTP: set [sink.s3] allow_http = true"
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(UploadJanitor {
            s3,
            bucket_url,
            region,
            sign_payload: !unsigned,
            http,
        })
    }

    /// Every incomplete upload whose key starts with `prefix`, following the listing's pages.
    pub async fn list(&self, prefix: &str) -> Result<Vec<PendingUpload>, StoreError> {
        let mut out = Vec::new();
        let mut markers: Option<(String, String)> = None;
        loop {
            let mut url = self.bucket_url.clone();
            {
                let mut q = url.query_pairs_mut();
                q.append_key_only("uploads");
                q.append_pair("prefix", prefix);
                if let Some((key, id)) = &markers {
                    q.append_pair("key-marker", key);
                    q.append_pair("upload-id-marker", id);
                }
            }
            let body = self.send(http::Method::GET, url, "list uploads").await?;
            let page: ListResult =
                quick_xml::de::from_str(&body).map_err(|e| self.error("list uploads", e))?;
            out.extend(page.upload.into_iter().map(|u| PendingUpload {
                key: u.key,
                upload_id: u.upload_id,
                initiated: u.initiated,
            }));
            match (
                page.is_truncated,
                page.next_key_marker,
                page.next_upload_id_marker,
            ) {
                (true, Some(k), Some(i)) => markers = Some((k, i)),
                _ => return Ok(out),
            }
        }
    }

    /// Aborts `upload`: its parts are deleted and its key is never created by it.
    pub async fn abort(&self, upload: &PendingUpload) -> Result<(), StoreError> {
        let mut url = self.bucket_url.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|_| self.error("abort upload", "bucket URL cannot be a base"))?;
            segments.pop_if_empty();
            segments.extend(upload.key.split('/'));
        }
        url.query_pairs_mut()
            .append_pair("uploadId", &upload.upload_id);
        self.send(http::Method::DELETE, url, "abort upload").await?;
        Ok(())
    }

    /// Sends a signed, body-less request; returns the answer's body on success.
    async fn send(
        &self,
        method: http::Method,
        url: url::Url,
        operation: &'static str,
    ) -> Result<String, StoreError> {
        let credential = self
            .s3
            .credentials()
            .get_credential()
            .await
            .map_err(|e| self.error(operation, e))?;
        let mut request: HttpRequest = http::Request::builder()
            .method(method.clone())
            .uri(url.as_str())
            .body(HttpRequestBody::empty())
            .map_err(|e| self.error(operation, e))?;
        AwsAuthorizer::new(&credential, "s3", &self.region)
            .with_sign_payload(self.sign_payload)
            .try_authorize(&mut request, None)
            .map_err(|e| self.error(operation, e))?;
        let mut builder = self.http.request(method, url.as_str());
        for (name, value) in request.headers() {
            builder = builder.header(name, value);
        }
        let response = builder
            .send()
            .await
            .map_err(|e| self.error(operation, e.without_url()))?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|e| self.error(operation, e.without_url()))?;
        if !status.is_success() {
            let snippet: String = body.chars().take(300).collect();
            return Err(self.error(operation, format!("HTTP {status}: {snippet}")));
        }
        Ok(body)
    }

    fn error(&self, operation: &'static str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Uploads {
            operation,
            bucket: self.bucket_url.to_string(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_page_is_read_with_its_markers() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>p/vm_metrics/date=2026-11-01/part-b.parquet</NextKeyMarker>
  <NextUploadIdMarker>id-2</NextUploadIdMarker>
  <MaxUploads>2</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>p/vm_metrics/date=2026-11-01/part-a&amp;b.parquet</Key><UploadId>id-1</UploadId>
    <Initiated>2026-11-23T10:00:00.000Z</Initiated></Upload>
  <Upload><Key>p/vm_metrics/date=2026-11-01/part-b.parquet</Key><UploadId>id-2</UploadId>
    <Initiated>2026-11-23T10:00:01.000Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let page: ListResult = quick_xml::de::from_str(xml).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.upload.len(), 2);
        assert_eq!(
            page.upload[0].key,
            "p/vm_metrics/date=2026-11-01/part-a&b.parquet"
        );
        assert_eq!(page.upload[1].upload_id, "id-2");
        assert_eq!(page.next_upload_id_marker.as_deref(), Some("id-2"));
    }

    #[test]
    fn an_empty_listing_has_no_upload() {
        let xml = r#"<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>"#;
        let page: ListResult = quick_xml::de::from_str(xml).unwrap();
        assert!(page.upload.is_empty());
        assert!(!page.is_truncated);
    }
}
