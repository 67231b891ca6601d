"""What the interop scripts share: spans written as JSON lines, and a Celery app wired the way
tracebench's Rust services use RabbitMQ.

Each script is started by services/pipeline/tests/interop.rs, which reads the span lines back and compares
them with the Rust side's spans: same trace id, and the parent edge across the process boundary.
"""

import json
import threading

from celery import Celery
from kombu import Exchange, Queue
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

# The task tracebench's scan-api sends and its worker runs.
PROCESS_IMAGE = "scan.process_image"


class JsonLinesExporter(SpanExporter):
    """Appends one JSON object per finished span to a file, flushed at once so a test polling the
    file sees the span as soon as it ended, even if this process is killed right after."""

    def __init__(self, path):
        self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()

    def export(self, spans):
        with self._lock:
            for span in spans:
                ctx = span.get_span_context()
                parent = span.parent
                line = {
                    "service": span.resource.attributes.get(SERVICE_NAME),
                    "name": span.name,
                    "kind": span.kind.name,
                    "trace_id": trace.format_trace_id(ctx.trace_id),
                    "span_id": trace.format_span_id(ctx.span_id),
                    "parent_span_id": trace.format_span_id(parent.span_id) if parent else None,
                    "parent_is_remote": bool(parent and parent.is_remote),
                    # Attribute values may be tuples; JSON has lists, and str() covers the rest.
                    "attributes": {k: v if isinstance(v, (str, int, float, bool)) else str(v)
                                   for k, v in (span.attributes or {}).items()},
                }
                self._file.write(json.dumps(line, sort_keys=True) + "\n")
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self):
        with self._lock:
            self._file.close()


def tracer_provider(service_name, out_path):
    """An SDK tracer provider for `service_name`, installed globally, exporting every span
    synchronously (SimpleSpanProcessor) to `out_path` as JSON lines. Synchronous export means no
    batch to flush before the process ends, and a span is on disk before the next one starts."""
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(SimpleSpanProcessor(JsonLinesExporter(out_path)))
    trace.set_tracer_provider(provider)
    return provider


def celery_app(name, broker_url, queue):
    """A Celery app whose one queue is `queue`, reached through the default exchange with the
    queue's name as routing key: how tracebench's scan-api and worker publish, so either side can
    be Python or Rust. Declared durable with no arguments, as the Rust side declares it (RabbitMQ
    refuses a second declaration with other properties)."""
    app = Celery(name, broker=broker_url)
    app.conf.update(
        task_queues=[Queue(queue, Exchange(""), routing_key=queue, durable=True)],
        task_default_queue=queue,
        # Without this, Celery swaps the empty exchange name for one named after the default
        # queue, and declares and binds that direct exchange: it would work, but leave an
        # exchange behind per test queue.
        task_default_exchange="",
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # No pidbox exchange and queue per worker: the tests leave nothing behind on the broker
        # but the one queue they delete.
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        broker_connection_retry_on_startup=True,
    )
    return app
