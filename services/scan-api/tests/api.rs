//! scan-api through its router: accepted scans are published to RabbitMQ (a real broker at
//! 127.0.0.1:5672, or `TB_AMQP_URL`), client mistakes are 4xx JSON errors.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use lapin::options::{BasicGetOptions, QueueDeleteOptions};
use serde_json::Value;
use tb_messaging::amqp::{self, Publisher};
use tb_messaging::celery::TaskMessage;
use tb_scan_api::{ScanApiState, app};
use tb_store::{EventStore, MemoryStore};
use tower::ServiceExt;

struct Fixture {
    app: Router,
    store: Arc<dyn EventStore>,
    connection: lapin::Connection,
    queue: String,
}

async fn fixture() -> Fixture {
    fixture_with(false).await
}

/// A fixture whose scan-api has `POST /test` on or off.
async fn fixture_with(w3c_test_endpoint: bool) -> Fixture {
    let url = std::env::var("TB_AMQP_URL").unwrap_or_else(|_| amqp::DEFAULT_URL.to_owned());
    let connection = amqp::connect(&url).await.expect("RabbitMQ answers");
    let link = amqp::Link::connect(&url).await.expect("RabbitMQ answers");
    let queue = format!("scan.tasks.api-test-{}", uuid::Uuid::new_v4());
    let publisher = Publisher::new(&link, &queue).await.expect("publisher");
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::default());
    Fixture {
        app: app(
            ScanApiState::new(publisher, store.clone()).with_w3c_test_endpoint(w3c_test_endpoint)
        ),
        store,
        connection,
        queue,
    }
}

impl Fixture {
    async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn post(&self, content_type: Option<&str>, body: impl Into<Body>) -> (StatusCode, Value) {
        self.post_to("/scan", content_type, body).await
    }

    async fn post_to(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let mut request = Request::post(path);
        if let Some(ct) = content_type {
            request = request.header(header::CONTENT_TYPE, ct);
        }
        self.send(request.body(body.into()).expect("request")).await
    }

    async fn drop_queue(self) {
        let channel = self.connection.create_channel().await.expect("channel");
        channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("deleted");
    }
}

const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn an_accepted_scan_is_a_confirmed_celery_task_on_the_queue() {
    let f = fixture().await;
    let (status, body) = f
        .post(
            JSON,
            r#"{"image_url":"https://img.example/can.jpg","user_id":"u-1"}"#,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["status"], "processing");
    let task_id = body["task_id"].as_str().expect("task id").to_owned();

    let channel = f.connection.create_channel().await.expect("channel");
    let message = channel
        .basic_get(f.queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("the task is on the queue");
    let headers = message.properties.headers().clone().unwrap_or_default();
    let task = TaskMessage::from_delivery(&headers, &message.data).expect("a celery task");
    assert_eq!(task.id, task_id);
    assert_eq!(task.task, "scan.process_image");
    assert_eq!(task.args[1], "https://img.example/can.jpg");
    assert_eq!(task.kwargs["user_id"], "u-1");
    // The task carries a traceparent exactly when the answer names a trace.
    assert_eq!(
        headers.inner().contains_key("traceparent"),
        !body["trace_id"].is_null(),
        "{body}"
    );

    let record = f
        .store
        .get(&task_id)
        .await
        .expect("store")
        .expect("recorded");
    assert_eq!(record.user_id, "u-1");
    let (status, got) = f
        .send(
            Request::get(format!("/scan/{task_id}"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["status"], "processing");
    f.drop_queue().await;
}

#[tokio::test]
async fn client_mistakes_are_4xx_json_errors() {
    let f = fixture().await;
    let big = format!(
        r#"{{"image_url":"https://x/a.jpg","user_id":"u","pad":"{}"}}"#,
        "x".repeat(tb_scan_api::BODY_LIMIT)
    );
    let cases: Vec<(Option<&str>, String, StatusCode)> = vec![
        (JSON, "{not json".to_owned(), StatusCode::BAD_REQUEST),
        (
            JSON,
            r#"{"user_id":"u"}"#.to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            JSON,
            r#"{"image_url":"ftp://x/a","user_id":"u"}"#.to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (
            JSON,
            r#"{"image_url":"https://x/a","user_id":""}"#.to_owned(),
            StatusCode::BAD_REQUEST,
        ),
        (JSON, "[]".to_owned(), StatusCode::BAD_REQUEST),
        (
            None,
            r#"{"image_url":"https://x/a","user_id":"u"}"#.to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Some("text/plain"),
            r#"{"image_url":"https://x/a","user_id":"u"}"#.to_owned(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (JSON, big, StatusCode::PAYLOAD_TOO_LARGE),
    ];
    for (content_type, body, want) in cases {
        let shown: String = body.chars().take(60).collect();
        let (status, json) = f.post(content_type, body).await;
        assert_eq!(status, want, "{content_type:?} {shown}: {json}");
        assert!(
            json["error"].is_string() && json["detail"].is_string(),
            "{shown}: {json}"
        );
    }
    for path in ["/scan/no-such-task", "/nowhere"] {
        let (status, json) = f
            .send(Request::get(path).body(Body::empty()).expect("request"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(json["error"], "not_found");
    }
    f.drop_queue().await;
}

/// A loopback HTTP server recording every JSON body POSTed to `/callback`; returns its URL.
async fn callee(got: Arc<std::sync::Mutex<Vec<Value>>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/callback", listener.local_addr().expect("addr"));
    let router = Router::new().route(
        "/callback",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| async move {
            got.lock().expect("lock").push(body);
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

#[tokio::test]
async fn post_test_is_off_by_default_and_when_on_posts_only_to_loopback_targets() {
    let cases = |urls: &[&str]| {
        let list: Vec<Value> = urls
            .iter()
            .map(|u| serde_json::json!({"url": u, "arguments": {"n": 1}}))
            .collect();
        Value::Array(list).to_string()
    };
    let got: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let loopback = callee(got.clone()).await;

    let off = fixture().await;
    let (status, body) = off.post_to("/test", JSON, cases(&[&loopback])).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "not_found");
    off.drop_queue().await;

    let on = fixture_with(true).await;
    // One target off loopback refuses the whole request, before anything is sent.
    for (urls, field) in [
        (
            vec![loopback.as_str(), "http://169.254.169.254/latest/meta-data"],
            "[1].url",
        ),
        (vec!["http://example.com/"], "[0].url"),
    ] {
        let (status, body) = on.post_to("/test", JSON, cases(&urls)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with(field)),
            "{body}"
        );
    }
    let many = vec![loopback.as_str(); tb_scan_api::MAX_TEST_CASES + 1];
    let (status, body) = on.post_to("/test", JSON, cases(&many)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        got.lock().expect("lock").is_empty(),
        "nothing sent for a refused request"
    );

    let (status, body) = on
        .post_to("/test", JSON, cases(&[&loopback, &loopback]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        *got.lock().expect("lock"),
        vec![serde_json::json!({"n": 1}); 2]
    );
    on.drop_queue().await;
}
