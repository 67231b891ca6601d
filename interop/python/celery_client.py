"""A real, instrumented Python Celery client sending one `scan.process_image` task.

Tests the direction Python publishes -> Rust consumes: inside a parent span `send scan`,
`app.send_task` goes through CeleryInstrumentor, whose `apply_async/scan.process_image` PRODUCER
span injects its context into the message headers; tracebench's worker must continue that trace.
Every finished span is appended to --out as a JSON line; the Celery task id is printed on stdout
as `{"celery_task_id": ...}`.

    python celery_client.py --broker amqp://guest:guest@127.0.0.1:5672/%2f \
        --queue scan.tasks.test-1 --task-id t-1 --image-url https://img.example/a.jpg \
        --user-id user-7 --out spans.jsonl
"""

import argparse
import json

from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor

import tbinterop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", required=True, help="RabbitMQ URL")
    parser.add_argument("--queue", required=True, help="queue to send to")
    parser.add_argument("--task-id", required=True, help="the scan's task id (first argument)")
    parser.add_argument("--image-url", required=True)
    parser.add_argument("--user-id", required=True)
    parser.add_argument("--out", required=True, help="file to append span JSON lines to")
    args = parser.parse_args()

    provider = tbinterop.tracer_provider("python-celery-client", args.out)
    CeleryInstrumentor().instrument()
    app = tbinterop.celery_app("tb-interop-client", args.broker, args.queue)

    # A stub under the worker's task name, never run here. CeleryInstrumentor ends its
    # apply_async span in the after_task_publish signal only when it finds the task in this
    # process's registry; for a name sent with send_task and not registered, the span is started
    # and made current but never ended, so it would never be exported (and would stay the current
    # span of this thread). Registering the name is the usual workaround.
    @app.task(name=tbinterop.PROCESS_IMAGE)
    def process_image(task_id, image_url, user_id=None):
        raise NotImplementedError("runs on the worker")

    tracer = trace.get_tracer("tb-interop-client")
    with tracer.start_as_current_span("send scan"):
        result = app.send_task(
            tbinterop.PROCESS_IMAGE,
            args=[args.task_id, args.image_url],
            kwargs={"user_id": args.user_id},
            queue=args.queue,
        )
    print(json.dumps({"celery_task_id": result.id}), flush=True)
    provider.shutdown()


if __name__ == "__main__":
    main()
