//! The STAC API error body (`{"code": ..., "description": ...}`) and which failures are the
//! client's (400, 404) and which are ours (500).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use earthcatalog_common::logging::error_report;
use earthcatalog_common::search::SearchError;
use serde_json::json;

/// A failed request, answered with its status and a STAC API error body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

impl ApiError {
    /// The request is malformed (400).
    pub fn bad_request(description: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "BadRequest",
            description: description.into(),
        }
    }

    /// What the request names does not exist (404).
    pub fn not_found(description: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "NotFound",
            description: description.into(),
        }
    }

    /// The server failed (500); the cause is logged, the client gets it too.
    pub fn internal(error: &(dyn std::error::Error + 'static)) -> ApiError {
        let description = error_report(error);
        tracing::error!("request failed: {description}");
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "ServerError", description }
    }

    /// The HTTP status.
    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<SearchError> for ApiError {
    fn from(e: SearchError) -> ApiError {
        match e {
            SearchError::BadBbox { .. }
            | SearchError::BadIntersects { .. }
            | SearchError::BadDatetime { .. }
            | SearchError::BadSortby { .. }
            | SearchError::BadFilter { .. }
            // A filter comparing a property with a value of another type is the query's fault.
            | SearchError::FilterEval { .. } => ApiError::bad_request(e.to_string()),
            other => ApiError::internal(&other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.code, "description": self.description});
        (self.status, axum::Json(body)).into_response()
    }
}
