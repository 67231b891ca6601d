"""A Python Kafka consumer (confluent-kafka) of `scan.completed` that continues each record's
trace from its headers with the W3C TraceContext propagator.

Tests the direction Rust produces -> Python consumes on Kafka: tracebench's worker writes a
`traceparent` record header from its `publish scan.completed` PRODUCER span, and this consumer's
`process scan.completed` CONSUMER span must be that span's child. Every finished span is
appended to --out as a JSON line.

Stops after the record of --until-task (exit 0), or after --timeout seconds without it (exit 1).

    python kafka_consumer.py --brokers 127.0.0.1:9092 --group g-1 --until-task t-1 \
        --out spans.jsonl
"""

import argparse
import json
import sys
import time

from confluent_kafka import Consumer
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import tbinterop


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", required=True, help="bootstrap.servers")
    parser.add_argument("--topic", default="scan.completed")
    parser.add_argument("--group", required=True, help="consumer group (a new one reads from the start)")
    parser.add_argument("--until-task", help="stop after the record of this task id")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before giving up")
    parser.add_argument("--out", required=True, help="file to append span JSON lines to")
    args = parser.parse_args()

    provider = tbinterop.tracer_provider("python-kafka-consumer", args.out)
    tracer = trace.get_tracer("tb-interop-kafka")
    # Explicitly W3C, whatever the global propagator is: the format the Rust side writes.
    propagator = TraceContextTextMapPropagator()

    consumer = Consumer({
        "bootstrap.servers": args.brokers,
        "group.id": args.group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([args.topic])
    deadline = time.monotonic() + args.timeout
    found = False
    try:
        while not found and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                print(f"tb-interop: kafka: {msg.error()}", file=sys.stderr, flush=True)
                continue
            # Header values are bytes (or None); the propagator reads text.
            carrier = {k: v.decode("utf-8", "replace") for k, v in (msg.headers() or []) if v is not None}
            parent = propagator.extract(carrier)
            event = json.loads(msg.value())
            with tracer.start_as_current_span(
                f"process {msg.topic()}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.destination.name": msg.topic(),
                    "messaging.destination.partition.id": str(msg.partition()),
                    "messaging.kafka.offset": msg.offset(),
                    "messaging.consumer.group.name": args.group,
                    "scan.task_id": event.get("task_id", ""),
                },
            ):
                pass
            found = args.until_task is not None and event.get("task_id") == args.until_task
    finally:
        consumer.close()
        provider.shutdown()
    if args.until_task is not None and not found:
        print(f"tb-interop: no record of task {args.until_task} within {args.timeout} s",
              file=sys.stderr, flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
