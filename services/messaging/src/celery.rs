//! The Celery task protocol, version 2, as Celery 5 writes it on AMQP: the task's identity in the
//! message headers, `[args, kwargs, embed]` as a JSON body, and the message properties Celery
//! sets. Trace context travels beside these as top-level `traceparent`/`tracestate`/`baggage`
//! headers (where opentelemetry-instrumentation-celery puts them); that part belongs to the
//! telemetry crate's AMQP carrier, not here.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use serde_json::{Map, Value, json};

/// The task the scan pipeline runs: `process_image(task_id, image_url, user_id=...)`.
pub const PROCESS_IMAGE: &str = "scan.process_image";

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// One Celery task invocation.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskMessage {
    /// Task id (a UUID in Celery; any unique string here).
    pub id: String,
    /// Registered task name, e.g. [`PROCESS_IMAGE`].
    pub task: String,
    /// Positional arguments.
    pub args: Vec<Value>,
    /// Keyword arguments.
    pub kwargs: Map<String, Value>,
    /// How many times this task has been retried (0 on the first attempt).
    pub retries: u32,
    /// Id of the first task of the workflow (the task itself when it has no parent).
    pub root_id: String,
    /// Id of the task that sent this one, if any.
    pub parent_id: Option<String>,
    /// Group id, if the task is part of a group.
    pub group: Option<String>,
    /// `pid@hostname` of the sender.
    pub origin: String,
}

/// Why a delivery is not a Celery v2 task message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CeleryError {
    /// A required header is missing or has the wrong type.
    #[error("header {0} is missing or not {1}")]
    Header(&'static str, &'static str),
    /// The body is not JSON `[args, kwargs, embed]`.
    #[error("body is not a JSON [args, kwargs, embed] triple: {0}")]
    Body(String),
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn text_or_void(value: Option<&str>) -> AMQPValue {
    value.map_or(AMQPValue::Void, text)
}

/// Python's `repr()` of a JSON value, the way Celery fills `argsrepr`/`kwargsrepr` (close enough
/// for people reading them in Flower; nothing parses these fields).
fn py_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".to_owned(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(py_repr).collect();
            format!("[{}]", inner.join(", "))
        }
        Value::Object(map) => {
            let inner: Vec<String> = map
                .iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
    }
}

/// Python's `repr()` of a tuple, as Celery shows `args` (a 1-tuple keeps its trailing comma).
fn py_tuple_repr(items: &[Value]) -> String {
    let inner: Vec<String> = items.iter().map(py_repr).collect();
    match inner.as_slice() {
        [one] => format!("({one},)"),
        _ => format!("({})", inner.join(", ")),
    }
}

impl TaskMessage {
    /// The first attempt of [`PROCESS_IMAGE`] for a scan.
    pub fn process_image(task_id: &str, image_url: &str, user_id: &str, origin: &str) -> Self {
        let mut kwargs = Map::new();
        kwargs.insert("user_id".to_owned(), Value::from(user_id));
        Self {
            id: task_id.to_owned(),
            task: PROCESS_IMAGE.to_owned(),
            args: vec![Value::from(task_id), Value::from(image_url)],
            kwargs,
            retries: 0,
            root_id: task_id.to_owned(),
            parent_id: None,
            group: None,
            origin: origin.to_owned(),
        }
    }

    /// The next attempt after a failure: same id, `retries` + 1, as `Task.retry` sends it.
    pub fn retried(&self) -> Self {
        Self {
            retries: self.retries + 1,
            ..self.clone()
        }
    }

    /// The AMQP headers of protocol v2, every field Celery 5 writes.
    pub fn headers(&self) -> FieldTable {
        let mut h = FieldTable::default();
        let mut put = |k: &str, v: AMQPValue| {
            h.insert(ShortString::from(k), v);
        };
        put("lang", text("py"));
        put("task", text(&self.task));
        put("id", text(&self.id));
        put("shadow", AMQPValue::Void);
        put("eta", AMQPValue::Void);
        put("expires", AMQPValue::Void);
        put("group", text_or_void(self.group.as_deref()));
        put("group_index", AMQPValue::Void);
        put("retries", AMQPValue::LongLongInt(i64::from(self.retries)));
        put(
            "timelimit",
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::Void, AMQPValue::Void])),
        );
        put("root_id", text(&self.root_id));
        put("parent_id", text_or_void(self.parent_id.as_deref()));
        put("argsrepr", text(&py_tuple_repr(&self.args)));
        put(
            "kwargsrepr",
            text(&py_repr(&Value::Object(self.kwargs.clone()))),
        );
        put("origin", text(&self.origin));
        put("ignore_result", AMQPValue::Boolean(false));
        h
    }

    /// The JSON body `[args, kwargs, {"callbacks": null, ...}]`.
    pub fn body(&self) -> Vec<u8> {
        let embed = json!({"callbacks": null, "errbacks": null, "chain": null, "chord": null});
        serde_json::to_vec(&json!([self.args, self.kwargs, embed])).unwrap_or_default()
    }

    /// The message properties Celery sets, with `headers` (this message's, plus any trace
    /// context the caller injected) attached.
    pub fn properties(&self, headers: FieldTable) -> BasicProperties {
        BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_content_encoding(ShortString::from("utf-8"))
            .with_correlation_id(ShortString::from(self.id.as_str()))
            .with_delivery_mode(PERSISTENT)
            .with_priority(0)
            .with_headers(headers)
    }

    /// Reads a task message from a delivery's headers and body.
    ///
    /// # Errors
    ///
    /// Fails when `task` or `id` is missing or not text, or when the body is not
    /// `[args, kwargs, embed]`.
    pub fn from_delivery(headers: &FieldTable, body: &[u8]) -> Result<Self, CeleryError> {
        let h = headers.inner();
        let get_text = |key: &'static str| -> Option<String> {
            match h.get(key)? {
                AMQPValue::LongString(s) => {
                    std::str::from_utf8(s.as_bytes()).ok().map(str::to_owned)
                }
                AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
                _ => None,
            }
        };
        let require = |key: &'static str| get_text(key).ok_or(CeleryError::Header(key, "text"));
        let task = require("task")?;
        let id = require("id")?;
        let retries = match h.get("retries") {
            None | Some(AMQPValue::Void) => Ok(0),
            Some(AMQPValue::LongLongInt(n)) => u32::try_from(*n),
            Some(AMQPValue::LongInt(n)) => u32::try_from(*n),
            Some(AMQPValue::ShortShortUInt(n)) => Ok(u32::from(*n)),
            Some(AMQPValue::ShortUInt(n)) => Ok(u32::from(*n)),
            Some(AMQPValue::LongUInt(n)) => Ok(*n),
            Some(_) => return Err(CeleryError::Header("retries", "an integer")),
        }
        .map_err(|_| CeleryError::Header("retries", "a count"))?;
        let parsed: Value =
            serde_json::from_slice(body).map_err(|e| CeleryError::Body(e.to_string()))?;
        let (args, kwargs) = match parsed {
            Value::Array(mut parts) if parts.len() == 3 => {
                let kwargs = parts.swap_remove(1);
                let args = parts.swap_remove(0);
                match (args, kwargs) {
                    (Value::Array(a), Value::Object(k)) => (a, k),
                    _ => {
                        return Err(CeleryError::Body(
                            "args must be a list and kwargs an object".to_owned(),
                        ));
                    }
                }
            }
            _ => return Err(CeleryError::Body("expected a 3-element list".to_owned())),
        };
        Ok(Self {
            root_id: get_text("root_id").unwrap_or_else(|| id.clone()),
            parent_id: get_text("parent_id"),
            group: get_text("group"),
            origin: get_text("origin").unwrap_or_default(),
            id,
            task,
            args,
            kwargs,
            retries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan() -> TaskMessage {
        TaskMessage::process_image("6b1d", "https://img/1.jpg", "u-1", "1234@scan-api")
    }

    #[test]
    fn headers_carry_every_protocol_v2_field() {
        let h = scan().headers();
        let inner = h.inner();
        for key in [
            "lang",
            "task",
            "id",
            "shadow",
            "eta",
            "expires",
            "group",
            "group_index",
            "retries",
            "timelimit",
            "root_id",
            "parent_id",
            "argsrepr",
            "kwargsrepr",
            "origin",
            "ignore_result",
        ] {
            assert!(inner.contains_key(key), "missing {key}");
        }
        assert_eq!(inner.get("task"), Some(&text(PROCESS_IMAGE)));
        assert_eq!(inner.get("retries"), Some(&AMQPValue::LongLongInt(0)));
        assert_eq!(inner.get("parent_id"), Some(&AMQPValue::Void));
        assert_eq!(
            inner.get("argsrepr"),
            Some(&text("('6b1d', 'https://img/1.jpg')"))
        );
        assert_eq!(inner.get("kwargsrepr"), Some(&text("{'user_id': 'u-1'}")));
    }

    #[test]
    fn args_repr_is_a_python_tuple() {
        assert_eq!(py_tuple_repr(&[]), "()");
        assert_eq!(py_tuple_repr(&[Value::from("a")]), "('a',)");
        assert_eq!(py_tuple_repr(&[Value::from(1), Value::Null]), "(1, None)");
    }

    #[test]
    fn body_is_args_kwargs_embed() {
        let body: Value = serde_json::from_slice(&scan().body()).expect("JSON");
        assert_eq!(
            body,
            json!([["6b1d", "https://img/1.jpg"], {"user_id": "u-1"},
                   {"callbacks": null, "errbacks": null, "chain": null, "chord": null}])
        );
    }

    #[test]
    fn properties_mark_json_persistent_and_correlated() {
        let m = scan();
        let p = m.properties(m.headers());
        assert_eq!(
            p.content_type().as_ref().map(ShortString::as_str),
            Some("application/json")
        );
        assert_eq!(
            p.content_encoding().as_ref().map(ShortString::as_str),
            Some("utf-8")
        );
        assert_eq!(
            p.correlation_id().as_ref().map(ShortString::as_str),
            Some("6b1d")
        );
        assert_eq!(*p.delivery_mode(), Some(2));
    }

    #[test]
    fn round_trips_through_headers_and_body() {
        let m = scan().retried().retried();
        let back = TaskMessage::from_delivery(&m.headers(), &m.body()).expect("valid");
        assert_eq!(back, m);
        assert_eq!(back.retries, 2);
    }

    #[test]
    fn reads_what_python_celery_sends() {
        // py-amqp writes ints as 'l' (LongLongInt) or 'I' (LongInt) and None as 'V'.
        let mut h = FieldTable::default();
        h.insert("task".into(), text(PROCESS_IMAGE));
        h.insert("id".into(), AMQPValue::ShortString("abc".into()));
        h.insert("retries".into(), AMQPValue::LongInt(1));
        h.insert("parent_id".into(), AMQPValue::Void);
        let body = br#"[["abc", "https://img/2.jpg"], {"user_id": "u-2"}, {"callbacks": null, "errbacks": null, "chain": null, "chord": null}]"#;
        let m = TaskMessage::from_delivery(&h, body).expect("valid");
        assert_eq!(m.id, "abc");
        assert_eq!(m.retries, 1);
        assert_eq!(m.root_id, "abc");
        assert_eq!(m.parent_id, None);
        assert_eq!(m.kwargs["user_id"], "u-2");
    }

    #[test]
    fn malformed_deliveries_are_rejected_with_the_reason() {
        let good = scan();
        let mut no_task = good.headers();
        no_task.insert("task".into(), AMQPValue::LongLongInt(1));
        assert_eq!(
            TaskMessage::from_delivery(&no_task, &good.body()),
            Err(CeleryError::Header("task", "text"))
        );
        for body in [&b"not json"[..], b"[1, 2]", br#"[{}, {}, {}]"#] {
            assert!(matches!(
                TaskMessage::from_delivery(&good.headers(), body),
                Err(CeleryError::Body(_))
            ));
        }
        let mut negative = good.headers();
        negative.insert("retries".into(), AMQPValue::LongLongInt(-1));
        assert!(TaskMessage::from_delivery(&negative, &good.body()).is_err());
    }
}
