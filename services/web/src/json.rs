//! A JSON body extractor whose rejections are [`ApiError`]s: malformed JSON or a body that does
//! not fit the type (missing or mistyped fields) → 400 (axum alone answers 422 for the latter), a wrong or missing content type → 415, a body over the route's limit
//! → 413. Never a 5xx for a client's mistake, never a plain-text body.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// `axum::Json` with JSON error rejections; also a JSON response.
#[derive(Clone, Copy, Debug, Default)]
pub struct Json<T>(pub T);

fn rejection(r: JsonRejection) -> ApiError {
    let error = match &r {
        JsonRejection::JsonDataError(_) => "invalid_request",
        JsonRejection::JsonSyntaxError(_) => "invalid_json",
        JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
        JsonRejection::BytesRejection(_) => "body_unreadable",
        _ => "invalid_request",
    };
    let status = match &r {
        JsonRejection::JsonDataError(_) => http::StatusCode::BAD_REQUEST,
        _ => r.status(),
    };
    ApiError::new(status, error, r.body_text())
}

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::Json::<T>::from_request(req, state)
            .await
            .map(|axum::Json(v)| Self(v))
            .map_err(rejection)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use serde::Deserialize;
    use tower::ServiceExt;

    use super::*;

    #[derive(Deserialize, Serialize)]
    struct Scan {
        image_url: String,
    }

    fn app() -> Router {
        Router::new()
            .route(
                "/",
                post(|Json(scan): Json<Scan>| async move { Json(scan) }),
            )
            .layer(DefaultBodyLimit::max(64))
    }

    async fn send(content_type: Option<&str>, body: &str) -> (StatusCode, serde_json::Value) {
        let mut req = Request::post("/");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let res = app()
            .oneshot(req.body(Body::from(body.to_owned())).expect("request"))
            .await
            .expect("infallible");
        let status = res.status();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).expect("a JSON body"))
    }

    #[tokio::test]
    async fn client_mistakes_get_json_4xx() {
        let json = Some("application/json");
        for (ct, body, status, error) in [
            (json, "{not json", StatusCode::BAD_REQUEST, "invalid_json"),
            (
                json,
                r#"{"user_id":1}"#,
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                Some("text/plain"),
                r#"{"image_url":"x"}"#,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                None,
                r#"{"image_url":"x"}"#,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                json,
                &format!(r#"{{"image_url":"{}"}}"#, "x".repeat(100)),
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_unreadable",
            ),
        ] {
            let (got, body) = send(ct, body).await;
            assert_eq!(got, status, "{body}");
            assert_eq!(body["error"], error);
            assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }
    }

    #[tokio::test]
    async fn valid_json_passes_through() {
        let (status, body) = send(Some("application/json"), r#"{"image_url":"x"}"#).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["image_url"], "x");
    }
}
