"""The Quix quickstart CPU publisher as published, on quixstreams 0.5.7: psutil.cpu_percent in a
loop, a stream named "Quickstart CPU Load - Server 1" with a 100 ms timeseries buffer, parameter
CPU_Load, stream.close() on exit. The one change: KafkaStreamingClient(broker) instead of
QuixStreamingClient(token), so it runs against the local broker.

  --interval S      seconds per sample (psutil.cpu_percent(interval=S)); SIGTERM ends it
  --throughput N    instead: publish N values as fast as possible, close, flush, and print
                    {"values": N, "seconds": t, "values_per_second": r}
"""
import argparse
import datetime
import json
import signal
import time

from quixstreams import KafkaStreamingClient

parser = argparse.ArgumentParser()
parser.add_argument("--broker", required=True)
parser.add_argument("--topic", default="cpu-load")
parser.add_argument("--interval", type=float, default=1.0)
parser.add_argument("--throughput", type=int)
args = parser.parse_args()

client = KafkaStreamingClient(args.broker)
producer = client.get_topic_producer(args.topic)
stream = producer.create_stream()
stream.properties.name = "Quickstart CPU Load - Server 1"
stream.timeseries.buffer.time_span_in_milliseconds = 100

if args.throughput:
    start = time.time()
    for i in range(args.throughput):
        stream.timeseries.buffer.add_timestamp_nanoseconds(time.time_ns()).add_value("CPU_Load", (i % 1000) / 10).publish()
    stream.close()
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
        cpu_load = psutil.cpu_percent(interval=args.interval)
        stream.timeseries.buffer.add_timestamp(datetime.datetime.utcnow()).add_value("CPU_Load", cpu_load).publish()
    stream.close()
    producer.flush()
