//! Span helpers for the four span kinds tracebench uses — HTTP server and client, messaging
//! producer and consumer — with OpenTelemetry semantic-convention attributes.
//!
//! Each helper returns a `tracing` span whose remote parent (if any) is already set, so the
//! caller only enters or instruments it. Fields that are known only later (status code, Kafka
//! partition and offset, message id) are declared empty here and filled with
//! [`tracing::Span::record`] using the same constants.

use std::fmt;

use http::{HeaderMap, Method};
use opentelemetry::Context;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_semantic_conventions::attribute::{
    DB_COLLECTION_NAME, DB_NAMESPACE, DB_OPERATION_NAME, DB_QUERY_TEXT, DB_RESPONSE_STATUS_CODE,
    DB_SYSTEM_NAME, ERROR_TYPE, HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE,
    MESSAGING_CONSUMER_GROUP_NAME, MESSAGING_DESTINATION_NAME, MESSAGING_DESTINATION_PARTITION_ID,
    MESSAGING_DESTINATION_TEMPLATE, MESSAGING_KAFKA_MESSAGE_KEY, MESSAGING_KAFKA_OFFSET,
    MESSAGING_MESSAGE_ID, MESSAGING_OPERATION_NAME, MESSAGING_OPERATION_TYPE,
    MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY, MESSAGING_SYSTEM, SERVER_ADDRESS, SERVER_PORT,
    URL_FULL, URL_PATH,
};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::carrier;

/// The messaging systems the pipeline speaks, as `messaging.system` spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessagingSystem {
    /// RabbitMQ over AMQP 0-9-1.
    RabbitMq,
    /// Apache Kafka (or a wire-compatible broker).
    Kafka,
}

impl MessagingSystem {
    /// The semantic-convention value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RabbitMq => "rabbitmq",
            Self::Kafka => "kafka",
        }
    }
}

impl fmt::Display for MessagingSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a consumer span relates to the producer that sent the message: `child` or `link`, in a
/// scenario file and on a command line alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsumerRelation {
    /// The producer span is the consumer span's parent: one trace end to end.
    #[default]
    Child,
    /// The consumer span starts a new trace and links to the producer span, as the messaging
    /// conventions suggest for batch or fan-out consumers.
    Link,
}

/// A relation name that is neither `child` nor `link`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown relation {0:?}; expected child or link")]
pub struct UnknownRelation(String);

impl std::str::FromStr for ConsumerRelation {
    type Err = UnknownRelation;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "child" => Ok(Self::Child),
            "link" => Ok(Self::Link),
            _ => Err(UnknownRelation(s.to_owned())),
        }
    }
}

/// Sets `cx` as the span's parent. Must happen before the span is first entered. Without a
/// valid span in `cx` the span is a root, and a trace started here: its spans send the `random`
/// flag ([`crate::propagator::started_here`]).
fn set_remote_parent(span: &Span, cx: Context) {
    let cx = crate::propagator::started_here(cx);
    // The only failures are "no OpenTelemetry layer" (tracing is off) and "already started",
    // which these helpers rule out by calling it right after creating the span.
    let _ = span.set_parent(cx);
}

/// A SERVER span for an incoming HTTP request, continuing `remote` (the context the caller
/// extracted from the request's headers: [`carrier::http::extract`]), as [`consumer`] continues
/// the context extracted from a message.
///
/// `route` is the matched route template (`/scan/{task_id}`), never the raw path, so the span
/// name `POST /scan/{task_id}` stays low-cardinality.
pub fn http_server(method: &Method, route: &str, path: &str, remote: Context) -> Span {
    let span = tracing::info_span!(
        parent: None,
        "http.server",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        { HTTP_REQUEST_METHOD } = method.as_str(),
        { HTTP_ROUTE } = route,
        { URL_PATH } = path,
        { HTTP_RESPONSE_STATUS_CODE } = Empty,
        { ERROR_TYPE } = Empty,
    );
    set_remote_parent(&span, remote);
    span
}

/// A CLIENT span for an outgoing HTTP request, a child of the current span. Inject it into the
/// request with [`inject_http`].
pub fn http_client(method: &Method, url: &str, server_address: &str, server_port: u16) -> Span {
    tracing::info_span!(
        "http.client",
        otel.name = method.as_str(),
        otel.kind = "client",
        otel.status_code = Empty,
        { HTTP_REQUEST_METHOD } = method.as_str(),
        { URL_FULL } = url,
        { SERVER_ADDRESS } = server_address,
        { SERVER_PORT } = server_port,
        { HTTP_RESPONSE_STATUS_CODE } = Empty,
        { ERROR_TYPE } = Empty,
    )
}

/// Writes `span`'s context into outgoing HTTP headers.
pub fn inject_http(span: &Span, headers: &mut HeaderMap) {
    carrier::http::inject(&span.context(), headers);
}

/// Records an HTTP response status on a server or client span.
///
/// Per the HTTP conventions a server span is an error only for 5xx, a client span for 4xx and
/// 5xx; `is_client` picks the rule.
pub fn record_http_status(span: &Span, status: u16, is_client: bool) {
    span.record(HTTP_RESPONSE_STATUS_CODE, status);
    let error = status >= 500 || (is_client && status >= 400);
    if error {
        span.record(ERROR_TYPE, status.to_string());
        span.record("otel.status_code", "ERROR");
    }
}

/// Marks a span as failed with an `error.type` (a low-cardinality class such as `timeout`).
pub fn record_error(span: &Span, error_type: &str) {
    span.record(ERROR_TYPE, error_type);
    span.record("otel.status_code", "ERROR");
}

/// Where a database call goes, for its CLIENT span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbTarget {
    /// `db.system.name`: `postgresql`.
    pub system: &'static str,
    /// `db.namespace`: the database (and schema) the statement runs in.
    pub namespace: String,
    /// `server.address`.
    pub address: String,
    /// `server.port`.
    pub port: u16,
}

/// A CLIENT span for one database statement, a child of the current span, named as the
/// database conventions say: `{operation} {collection}` (`UPDATE scans`). `query` is the
/// parameterised text, never one with values in it.
pub fn db_client(target: &DbTarget, operation: &str, collection: &str, query: &str) -> Span {
    tracing::info_span!(
        "db.client",
        otel.name = format!("{operation} {collection}"),
        otel.kind = "client",
        otel.status_code = Empty,
        { DB_SYSTEM_NAME } = target.system,
        { DB_NAMESPACE } = target.namespace.as_str(),
        { DB_OPERATION_NAME } = operation,
        { DB_COLLECTION_NAME } = collection,
        { DB_QUERY_TEXT } = query,
        { SERVER_ADDRESS } = target.address.as_str(),
        { SERVER_PORT } = target.port,
        { DB_RESPONSE_STATUS_CODE } = Empty,
        { ERROR_TYPE } = Empty,
    )
}

/// Marks a database CLIENT span failed: `db.response.status_code` (PostgreSQL's SQLSTATE) when
/// the server answered with one, and `error.type`.
pub fn record_db_error(span: &Span, status_code: Option<&str>, error_type: &str) {
    if let Some(code) = status_code {
        span.record(DB_RESPONSE_STATUS_CODE, code);
    }
    record_error(span, error_type);
}

/// A PRODUCER span for publishing to `destination` (queue, exchange or topic), a child of the
/// current span. Inject it into the message with the carrier for the system.
pub fn producer(system: MessagingSystem, destination: &str) -> Span {
    producer_templated(system, destination, destination)
}

/// [`producer`] for a destination named for one run or instance (`scan.tasks.run-1f0c…`):
/// the span is named by `template` (`publish scan.tasks`), as span names must stay few, and
/// carries it as `messaging.destination.template` beside the real name.
pub fn producer_templated(system: MessagingSystem, destination: &str, template: &str) -> Span {
    let span = tracing::info_span!(
        "messaging.producer",
        otel.name = format!("publish {template}"),
        otel.kind = "producer",
        otel.status_code = Empty,
        { MESSAGING_SYSTEM } = system.as_str(),
        { MESSAGING_DESTINATION_NAME } = destination,
        { MESSAGING_DESTINATION_TEMPLATE } = Empty,
        { MESSAGING_OPERATION_TYPE } = "send",
        { MESSAGING_OPERATION_NAME } = "publish",
        { MESSAGING_MESSAGE_ID } = Empty,
        { MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY } = Empty,
        { MESSAGING_KAFKA_MESSAGE_KEY } = Empty,
        { MESSAGING_DESTINATION_PARTITION_ID } = Empty,
        { MESSAGING_KAFKA_OFFSET } = Empty,
        { ERROR_TYPE } = Empty,
    );
    if template != destination {
        span.record(MESSAGING_DESTINATION_TEMPLATE, template);
    }
    span
}

/// A CONSUMER span for processing a message from `destination`, related to the producer's
/// context `remote` as `relation` says. With no valid remote context the span starts a new trace.
pub fn consumer(
    system: MessagingSystem,
    destination: &str,
    remote: Context,
    relation: ConsumerRelation,
) -> Span {
    let span = tracing::info_span!(
        parent: None,
        "messaging.consumer",
        otel.name = format!("process {destination}"),
        otel.kind = "consumer",
        otel.status_code = Empty,
        { MESSAGING_SYSTEM } = system.as_str(),
        { MESSAGING_DESTINATION_NAME } = destination,
        { MESSAGING_OPERATION_TYPE } = "process",
        { MESSAGING_OPERATION_NAME } = "process",
        { MESSAGING_MESSAGE_ID } = Empty,
        { MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY } = Empty,
        { MESSAGING_CONSUMER_GROUP_NAME } = Empty,
        { MESSAGING_KAFKA_MESSAGE_KEY } = Empty,
        { MESSAGING_DESTINATION_PARTITION_ID } = Empty,
        { MESSAGING_KAFKA_OFFSET } = Empty,
        { ERROR_TYPE } = Empty,
    );
    match relation {
        ConsumerRelation::Child => set_remote_parent(&span, remote),
        ConsumerRelation::Link => {
            let producer = remote.span().span_context().clone();
            // A trace of its own, started here.
            set_remote_parent(&span, Context::new());
            // `add_link` ignores an invalid context, so a message without headers simply gets
            // a root span with no link.
            span.add_link(producer);
        }
    }
    span
}

/// Attribute keys recorded on messaging spans after creation, re-exported so callers use the
/// same constants the helpers declare.
pub mod keys {
    pub use opentelemetry_semantic_conventions::attribute::{
        MESSAGING_CONSUMER_GROUP_NAME, MESSAGING_DESTINATION_PARTITION_ID,
        MESSAGING_KAFKA_MESSAGE_KEY, MESSAGING_KAFKA_OFFSET, MESSAGING_MESSAGE_ID,
        MESSAGING_RABBITMQ_DESTINATION_ROUTING_KEY,
    };
}
