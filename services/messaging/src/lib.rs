//! What crosses the brokers. [`celery`]: the Celery task message (protocol v2) that the scan API
//! publishes to RabbitMQ and the worker consumes, byte-compatible with Python Celery so either
//! side can be the real thing.

pub mod celery;
