//! The error answer of the query and discovery routes, rendered per dialect: OpenTSDB's JSON
//! error object or Erlenmeyer's plain text; and Warp 10's own (Jetty's error page,
//! [`jetty_error`]). Its own module because every route, the fault plan and Warp 10's relayed
//! errors make one.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::format::push_str;
use vscope_core::dialect::Dialect;

/// An error answer, rendered per dialect by [`ApiError::into_response`]: OpenTSDB's JSON error
/// object, or Erlenmeyer's `http.Error` plain text (message and a newline).
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    details: Option<String>,
    allow: Option<&'static str>,
    /// A body sent verbatim with this content type, for the few answers that are neither.
    raw: Option<&'static str>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            details: None,
            allow: None,
            raw: None,
        }
    }

    /// A 400 with `message`.
    pub(crate) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// A body sent as is, whatever the dialect.
    pub(crate) fn raw(
        status: StatusCode,
        content_type: &'static str,
        body: impl Into<String>,
    ) -> ApiError {
        ApiError {
            raw: Some(content_type),
            ..ApiError::new(status, body)
        }
    }

    /// Adds OpenTSDB's `details` field (ignored by the text dialect).
    pub(crate) fn with_details(mut self, details: impl Into<String>) -> ApiError {
        self.details = Some(details.into());
        self
    }

    /// Adds an `Allow` header.
    pub(crate) fn with_allow(mut self, allow: &'static str) -> ApiError {
        self.allow = Some(allow);
        self
    }

    /// The status, for tests that check an error before it is rendered.
    #[cfg(test)]
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// The message (the text body in `ovh`), for tests.
    #[cfg(test)]
    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP answer in `dialect`'s format.
    pub(crate) fn into_response(self, dialect: Dialect) -> Response {
        let (content_type, body) = match (self.raw, dialect) {
            (Some(ct), _) => (ct, self.message),
            (None, Dialect::Ovh) => ("text/plain; charset=utf-8", format!("{}\n", self.message)),
            (None, Dialect::Opentsdb) => {
                let mut body = String::from("{\"error\":{\"code\":");
                body.push_str(&self.status.as_u16().to_string());
                body.push_str(",\"message\":");
                push_str(&mut body, &self.message);
                if let Some(d) = &self.details {
                    body.push_str(",\"details\":");
                    push_str(&mut body, d);
                }
                body.push_str("}}");
                ("application/json; charset=UTF-8", body)
            }
        };
        let mut resp = (self.status, body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        if dialect == Dialect::Ovh && self.raw.is_none() {
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
        }
        if let Some(allow) = self.allow {
            headers.insert(header::ALLOW, HeaderValue::from_static(allow));
        }
        if self.status == StatusCode::UNAUTHORIZED && dialect == Dialect::Opentsdb {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"vscope-sim\""),
            );
        }
        resp
    }
}

/// Jetty's default error page for `sendError(status, reason)` on `path` (Jetty 9
/// `ErrorHandler.writeErrorPage`): what Warp 10 answers when a request fails before any byte
/// of its answer was sent.
pub(crate) fn jetty_error(status: StatusCode, path: &str, reason: &str) -> Response {
    let code = status.as_u16();
    let body = format!(
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=utf-8\"/>\n\
         <title>Error {code} {reason}</title>\n</head>\n<body><h2>HTTP ERROR {code}</h2>\n\
         <p>Problem accessing {path}. Reason:\n<pre>    {reason}</pre></p>\
         <hr><a href=\"http://eclipse.org/jetty\">Powered by Jetty:// 9.4.x</a><hr/>\n\n</body>\n</html>\n"
    );
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=utf-8"),
    );
    resp
}
