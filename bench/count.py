"""Counts what a topic holds: records, and values (the rows of Quix ParameterData records, one per
record otherwise). Prints {"records": n, "values": m}. Uses confluent-kafka (from the
quixstreams 3 venv)."""
import json
import sys
import uuid

from confluent_kafka import Consumer, TopicPartition

broker, topic = sys.argv[1], sys.argv[2]
c = Consumer({"bootstrap.servers": broker, "group.id": f"count-{uuid.uuid4()}", "enable.auto.commit": False,
              "enable.partition.eof": True, "auto.offset.reset": "earliest"})
md = c.list_topics(topic, timeout=10)
parts = list(md.topics[topic].partitions) if topic in md.topics and md.topics[topic].error is None else []
records = values = 0
if parts:
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    done = set()
    while len(done) < len(parts):
        m = c.poll(10)
        if m is None:
            break
        if m.error():
            if m.error().code() == -191:  # partition EOF
                done.add(m.partition())
            continue
        records += 1
        try:
            v = json.loads(m.value())
            stamps = v.get("V", {}).get("Timestamps") if isinstance(v, dict) and isinstance(v.get("V"), dict) else None
            if v.get("K") in ("ParameterData", "TimeseriesData") and stamps is not None:
                values += len(stamps)
            elif v.get("K") is None:
                values += 1
        except (ValueError, AttributeError, TypeError):
            values += 1
c.close()
print(json.dumps({"records": records, "values": values}))
