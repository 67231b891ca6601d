//! What crosses the brokers: the Celery task protocol (v2) on RabbitMQ, the scan events on
//! Kafka, and the client setup for both (including the embedded Kafka broker).

pub mod amqp;
pub mod backoff;
pub mod celery;
pub mod events;
pub mod kafka;
