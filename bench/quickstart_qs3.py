"""The quickstart's job written with quixstreams 3.28.1: psutil.cpu_percent in a loop, each
sample produced as a Quix timeseries message (value_serializer="quix_timeseries", key = a stream
id) to the local broker. quixstreams 3 has no time-span buffer: one message per sample.

  --interval S      seconds per sample; SIGTERM ends it
  --throughput N    instead: produce N values as fast as possible, flush, and print
                    {"values": N, "seconds": t, "values_per_second": r}
"""
import argparse
import json
import signal
import time
import uuid

from quixstreams import Application

parser = argparse.ArgumentParser()
parser.add_argument("--broker", required=True)
parser.add_argument("--topic", default="cpu-load")
parser.add_argument("--interval", type=float, default=1.0)
parser.add_argument("--throughput", type=int)
args = parser.parse_args()

app = Application(broker_address=args.broker, auto_create_topics=True)
topic = app.topic(args.topic, value_serializer="quix_timeseries", key_serializer="str")
key = str(uuid.uuid4())

with app.get_producer() as producer:
    def send(value):
        msg = topic.serialize(key=key, value={"Timestamp": time.time_ns(), "CPU_Load": value})
        producer.produce(topic=topic.name, key=msg.key, value=msg.value)

    if args.throughput:
        start = time.time()
        for i in range(args.throughput):
            send((i % 1000) / 10)
        producer.flush()
        seconds = time.time() - start
        print(json.dumps({"values": args.throughput, "seconds": seconds, "values_per_second": args.throughput / seconds}))
    else:
        import psutil

        running = True

        def stop(*_):
            global running
            running = False

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while running:
            send(psutil.cpu_percent(interval=args.interval))
        producer.flush()
