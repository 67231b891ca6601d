"""A real, instrumented Python Celery worker running `scan.process_image` from one queue.

Tests the direction Rust publishes -> Python consumes: tracebench's scan-api sends the task with
the trace context in top-level AMQP headers, and CeleryInstrumentor's `run/scan.process_image`
span must continue that trace as the child of scan-api's `publish <queue>` span. Every finished
span is appended to --out as a JSON line (see tbinterop.JsonLinesExporter).

    python celery_worker.py --broker amqp://guest:guest@127.0.0.1:5672/%2f \
        --queue scan.tasks.test-1 --out spans.jsonl
"""

import argparse

from celery.signals import worker_ready
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor

import tbinterop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True, help="RabbitMQ URL")
    parser.add_argument("--queue", required=True, help="queue to consume")
    parser.add_argument("--out", required=True, help="file to append span JSON lines to")
    args = parser.parse_args()

    tbinterop.tracer_provider("python-celery-worker", args.out)
    # The solo pool (below) runs tasks in this process, so instrumenting here is enough; a
    # prefork pool would need it in every child, from the worker_process_init signal.
    CeleryInstrumentor().instrument()

    app = tbinterop.celery_app("tb-interop-worker", args.broker, args.queue)

    @app.task(name=tbinterop.PROCESS_IMAGE, bind=True)
    def process_image(self, task_id, image_url, user_id=None):
        # The current span is the instrumentation's `run/scan.process_image`. The arguments go on
        # it so the test can check that Celery read the Rust-built message as sent.
        span = trace.get_current_span()
        span.set_attribute("scan.task_id", task_id)
        span.set_attribute("scan.image_url", image_url)
        span.set_attribute("scan.user_id", user_id or "")
        return {"task_id": task_id, "celery_id": self.request.id}

    @worker_ready.connect(weak=False)
    def announce_ready(**_):
        # On stderr (Celery's log stream), so a test failure shows how far the worker got.
        print("tb-interop: worker ready", flush=True)

    app.worker_main([
        "worker",
        "--pool=solo",
        "--concurrency=1",
        "--loglevel=INFO",
        f"--queues={args.queue}",
        "--hostname=tb-interop-worker@%h",
        # No broadcast chatter with other workers: this one is alone on its own queue.
        "--without-heartbeat",
        "--without-mingle",
        "--without-gossip",
    ])


if __name__ == "__main__":
    main()
