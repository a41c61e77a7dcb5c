"""Reads a topic with the real quixstreams 0.5.7 SDK (KafkaStreamingClient + StreamConsumer)
and prints what the SDK reports, one JSON object per line:

  {"event": "stream", "id": ...}
  {"event": "properties", "id": ..., "name": ..., "location": ..., "metadata": {...}}
  {"event": "definitions", "id": ..., "parameters": [{"id", "name", "unit", "min", "max", "location"}]}
  {"event": "data", "id": ..., "timestamp_ns": ..., "values": {param: number}}
  {"event": "closed", "id": ..., "end_type": "Closed"}

It stops when --streams streams have closed, or after --timeout seconds (exit 3).
"""
import argparse
import json
import sys
import threading
import time
import uuid

from quixstreams import AutoOffsetReset, KafkaStreamingClient

parser = argparse.ArgumentParser()
parser.add_argument("--broker", required=True)
parser.add_argument("--topic", required=True)
parser.add_argument("--streams", type=int, default=1, help="stop after this many streams closed")
parser.add_argument("--timeout", type=float, default=60)
args = parser.parse_args()

lock = threading.Lock()
closed = set()
done = threading.Event()


def emit(obj):
    with lock:
        print(json.dumps(obj), flush=True)


def on_stream(stream):
    sid = stream.stream_id
    emit({"event": "stream", "id": sid})

    def on_props(s):
        p = s.properties
        emit({"event": "properties", "id": sid, "name": p.name, "location": p.location,
              "metadata": dict(p.metadata)})

    def on_defs(s):
        defs = [{"id": d.id, "name": d.name, "unit": d.unit, "min": d.minimum_value,
                 "max": d.maximum_value, "location": d.location, "description": d.description}
                for d in s.timeseries.definitions]
        emit({"event": "definitions", "id": sid, "parameters": defs})

    def on_data(s, data):
        for ts in data.timestamps:
            values = {name: v.string_value if v.type.name == "String" else v.numeric_value
                      for name, v in ts.parameters.items()}
            emit({"event": "data", "id": sid, "timestamp_ns": ts.timestamp_nanoseconds,
                  "values": values, "tags": dict(ts.tags)})

    def on_closed(s, end_type):
        emit({"event": "closed", "id": sid, "end_type": end_type.name})
        with lock:
            closed.add(sid)
            if len(closed) >= args.streams:
                done.set()

    stream.properties.on_changed = on_props
    stream.timeseries.on_definitions_changed = on_defs
    stream.timeseries.on_data_received = on_data
    stream.on_stream_closed = on_closed


client = KafkaStreamingClient(args.broker)
consumer = client.get_topic_consumer(args.topic, consumer_group=f"hostpulse-test-{uuid.uuid4()}",
                                     auto_offset_reset=AutoOffsetReset.Earliest)
consumer.on_stream_received = on_stream
consumer.subscribe()
ok = done.wait(args.timeout)
time.sleep(0.2)
consumer.dispose()
sys.exit(0 if ok else 3)
