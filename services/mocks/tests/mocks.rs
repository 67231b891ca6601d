//! The mocks through their routers: answers, faults, streaming and bad input.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tb_mocks::llm::{self, LlmConfig, LlmState};
use tb_mocks::vision::{self, VisionConfig, VisionState};
use tb_mocks::{Faults, Latency};
use tower::ServiceExt;

const FAST: Latency = Latency::Constant { ms: 1.0 };

fn vision_app(faults: Faults) -> Router {
    vision::app(
        VisionState::new(&VisionConfig {
            latency: FAST,
            faults,
            ..VisionConfig::default()
        })
        .expect("valid config"),
    )
}

fn llm_app() -> Router {
    llm::app(
        LlmState::new(&LlmConfig {
            ttft: FAST,
            per_token: Latency::Constant { ms: 0.1 },
            ..LlmConfig::default()
        })
        .expect("valid config"),
    )
}

async fn post(app: Router, path: &str, body: &str) -> (StatusCode, http::HeaderMap, Vec<u8>) {
    let req = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request");
    let res = app.oneshot(req).await.expect("infallible");
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.expect("body").to_bytes().to_vec();
    (parts.status, parts.headers, bytes)
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON body")
}

#[tokio::test]
async fn vision_classifies_an_image_by_its_url() {
    let url = "https://img.example/bottle.jpg";
    let (status, _, body) = post(
        vision_app(Faults::default()),
        "/v1/analyze",
        &json!({"image_url": url}).to_string(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let body = json_of(&body);
    assert_eq!(body["category"], vision::category_of(url));
    let confidence = body["confidence"].as_f64().expect("number");
    assert!((0.5..1.0).contains(&confidence));
}

#[tokio::test]
async fn vision_fails_exactly_the_first_requests_when_asked() {
    let app = vision_app(Faults {
        fail_first: 2,
        ..Faults::default()
    });
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let request = Request::post("/v1/analyze")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"image_url":"https://x/a.jpg"}"#))
            .expect("request");
        let response = app.clone().oneshot(request).await.expect("infallible");
        statuses.push(response.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::OK,
            StatusCode::OK
        ]
    );
}

#[tokio::test]
async fn vision_injects_errors_and_rate_limits() {
    let (status, _, body) = post(
        vision_app(Faults {
            error_rate: 1.0,
            ..Faults::default()
        }),
        "/v1/analyze",
        r#"{"image_url":"x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json_of(&body)["error"], "injected_error");

    let (status, headers, _) = post(
        vision_app(Faults {
            rate_limit_rate: 1.0,
            retry_after_s: 3,
            ..Faults::default()
        }),
        "/v1/analyze",
        r#"{"image_url":"x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        headers
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("3")
    );
}

#[tokio::test]
async fn vision_timeout_hangs_past_the_client_deadline() {
    let app = vision_app(Faults {
        timeout_rate: 1.0,
        hang: Duration::from_secs(30),
        ..Faults::default()
    });
    let answered = tokio::time::timeout(
        Duration::from_millis(200),
        post(app, "/v1/analyze", r#"{"image_url":"x"}"#),
    )
    .await;
    assert!(
        answered.is_err(),
        "a timeout fault answered within the client's deadline"
    );
}

#[tokio::test]
async fn vision_rejects_bad_input_with_json_4xx() {
    for (body, status) in [
        ("{", StatusCode::BAD_REQUEST),
        (r#"{"url":"x"}"#, StatusCode::BAD_REQUEST),
        (r#"{"image_url":"  "}"#, StatusCode::BAD_REQUEST),
    ] {
        let (got, _, bytes) = post(vision_app(Faults::default()), "/v1/analyze", body).await;
        assert_eq!(got, status, "{body}");
        assert!(json_of(&bytes)["error"].is_string());
    }
}

#[tokio::test]
async fn llm_answers_with_the_requested_number_of_tokens() {
    let req = json!({"model": "mock", "messages": [{"role": "user", "content": "explain this"}], "max_tokens": 5});
    let (status, _, body) = post(llm_app(), "/v1/chat/completions", &req.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    let body = json_of(&body);
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["usage"]["completion_tokens"], 5);
    assert_eq!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .map(|c| c.split_whitespace().count()),
        Some(5)
    );
}

#[tokio::test]
async fn llm_streams_one_event_per_token_then_done() {
    let req = json!({"model": "mock", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": true});
    let (status, headers, body) = post(llm_app(), "/v1/chat/completions", &req.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let text = String::from_utf8(body).expect("utf-8");
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.len(), 4 + 2, "{text}");
    assert_eq!(events.last(), Some(&"[DONE]"));
    let first: Value = serde_json::from_str(events[0]).expect("chunk JSON");
    assert_eq!(first["choices"][0]["delta"]["content"], "tok0 ");
}

#[tokio::test]
async fn llm_rejects_an_empty_conversation() {
    let (status, _, body) = post(
        llm_app(),
        "/v1/chat/completions",
        r#"{"model":"m","messages":[]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(json_of(&body)["error"], "invalid_request");
}

#[test]
fn invalid_configuration_names_the_field() {
    let err = VisionState::new(&VisionConfig {
        latency: Latency::LogNormalP99 {
            median_ms: 10.0,
            p99_ms: 5.0,
        },
        ..VisionConfig::default()
    })
    .expect_err("p99 below median");
    assert!(err.to_string().starts_with("latency: p99_ms"), "{err}");
    let err = LlmState::new(&LlmConfig {
        time_scale: -1.0,
        ..LlmConfig::default()
    })
    .expect_err("negative scale");
    assert!(err.to_string().contains("time_scale"), "{err}");
    // Zero is valid: no simulated time at all.
    assert!(
        LlmState::new(&LlmConfig {
            time_scale: 0.0,
            ..LlmConfig::default()
        })
        .is_ok()
    );
}

#[tokio::test]
async fn shutdown_releases_hanging_requests_instead_of_waiting_them_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = VisionState::new(&VisionConfig {
        latency: FAST,
        faults: Faults {
            timeout_rate: 1.0,
            hang: Duration::from_secs(600),
            ..Faults::default()
        },
        ..VisionConfig::default()
    })
    .expect("valid config");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(vision::run(state, listener, async {
        let _ = stopped.await;
    }));

    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = r#"{"image_url":"x"}"#;
    let request = format!(
        "POST /v1/analyze HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(request.as_bytes()).await.expect("send");
    // Give the request time to reach the handler and start hanging, then shut down.
    let mut first = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(100), conn.peek(&mut first)).await;
    assert!(
        early.is_err(),
        "the hanging request answered before shutdown"
    );
    stop.send(()).expect("server alive");

    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_string(&mut response))
        .await
        .expect("answered promptly after shutdown")
        .expect("read");
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server drained")
        .expect("task")
        .expect("serve");
}

#[tokio::test]
async fn knobs_turned_while_serving_change_errors_and_latency_from_the_next_request() {
    let knobs = std::sync::Arc::new(tb_mocks::Knobs::default());
    let app = vision::app(
        VisionState::new(&VisionConfig {
            latency: Latency::Constant { ms: 50.0 },
            knobs: knobs.clone(),
            ..VisionConfig::default()
        })
        .expect("valid config"),
    );
    let body = r#"{"image_url":"https://x/a.jpg"}"#;
    let timed = |app: Router| async move {
        let started = std::time::Instant::now();
        let (status, _, _) = post(app, "/v1/analyze", body).await;
        (status, started.elapsed())
    };
    let (status, took) = timed(app.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(took >= Duration::from_millis(50), "{took:?}");
    knobs.set_error_rate(1.0);
    assert_eq!(
        timed(app.clone()).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    knobs.set_error_rate(0.0);
    knobs.set_latency_factor(4.0);
    let (status, took) = timed(app.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(took >= Duration::from_millis(200), "4 × 50 ms: {took:?}");
    knobs.set_latency_factor(0.0);
    let (_, took) = timed(app).await;
    assert!(
        took < Duration::from_millis(50),
        "no latency at all: {took:?}"
    );
}
