"""Reads a topic with the real quixstreams 3.x `Application` (value_deserializer="quix") and
prints every row it yields as one JSON object per line:

  {"key": <stream id>, "kafka_ts": <record timestamp, ms>, "row": {<param>: value, "Timestamp": ns, "Tags": {}}}

It stops after --rows rows, or after --timeout seconds (exit 3). Without --broker, the
Application finds the broker through the Portal API, from Quix__Sdk__Token and Quix__Portal__Api.
"""
import argparse
import json
import os
import sys
import tempfile
import threading
import uuid

from quixstreams import Application

parser = argparse.ArgumentParser()
parser.add_argument("--broker")
parser.add_argument("--topic", required=True)
parser.add_argument("--rows", type=int, required=True)
parser.add_argument("--timeout", type=float, default=60)
args = parser.parse_args()

app = Application(
    broker_address=args.broker,
    consumer_group=f"hostpulse-test-{uuid.uuid4()}",
    auto_offset_reset="earliest",
    auto_create_topics=False,
    state_dir=tempfile.mkdtemp(prefix="hostpulse-qs3-state-"),
)
topic = app.topic(args.topic, value_deserializer="quix", key_deserializer="str")
sdf = app.dataframe(topic)
seen = []
timed_out = threading.Event()


def on_row(value, key, timestamp, headers):
    seen.append(1)
    print(json.dumps({"key": key, "kafka_ts": timestamp, "row": value}, default=repr), flush=True)
    if len(seen) >= args.rows:
        # Every row asked for is read and written out: leave now. Closing the consumer is not
        # what is tested (its group is a throwaway), and librdkafka's teardown over SASL_SSL
        # crashed this process once (SIGSEGV) after the last row had been printed.
        sys.stderr.flush()
        os._exit(0)


def on_timeout():
    timed_out.set()
    app.stop()


sdf = sdf.update(on_row, metadata=True)
timer = threading.Timer(args.timeout, on_timeout)
timer.daemon = True
timer.start()
app.run()
timer.cancel()
sys.exit(3 if timed_out.is_set() and len(seen) < args.rows else 0)
