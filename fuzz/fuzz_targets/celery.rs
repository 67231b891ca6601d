//! Decoding a Celery task message (protocol v2 headers and body) never panics, and a message it
//! accepts, encoded again, decodes to the same task.
#![no_main]

use lapin::types::{AMQPValue, FieldTable, LongString};
use libfuzzer_sys::fuzz_target;
use tb_messaging::celery::TaskMessage;

fuzz_target!(|data: &[u8]| {
    // The first byte picks how `retries` is sent (absent, or one of the integer types Celery
    // clients use, from the next bytes); the rest is the body.
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let mut headers = FieldTable::default();
    headers.insert(
        "task".into(),
        AMQPValue::LongString(LongString::from("scan.process_image")),
    );
    headers.insert(
        "id".into(),
        AMQPValue::LongString(LongString::from("task-1")),
    );
    let (retries, body) = match (pick % 4, rest) {
        (1, [a, body @ ..]) => (Some(AMQPValue::ShortShortUInt(*a)), body),
        (2, [a, b, c, d, body @ ..]) => (
            Some(AMQPValue::LongInt(i32::from_le_bytes([*a, *b, *c, *d]))),
            body,
        ),
        (3, [a, b, c, d, e, f, g, h, body @ ..]) => (
            Some(AMQPValue::LongLongInt(i64::from_le_bytes([
                *a, *b, *c, *d, *e, *f, *g, *h,
            ]))),
            body,
        ),
        _ => (None, rest),
    };
    if let Some(r) = retries {
        headers.insert("retries".into(), r);
    }
    let Ok(task) = TaskMessage::from_delivery(&headers, body) else {
        return;
    };
    let again =
        TaskMessage::from_delivery(&task.headers(), &task.body()).expect("an encoded task decodes");
    assert_eq!(again, task);
});
