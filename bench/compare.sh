#!/usr/bin/env bash
# HostPulse against what people run instead, on this machine and one local tansu broker:
#
#   - the Quix quickstart program as published (psutil + quixstreams 0.5.7; KafkaStreamingClient
#     to the local broker instead of the token client; 100 ms buffer span);
#   - the same job written with quixstreams 3.28.1;
#   - collectd (Debian package) with the cpu plugin and write_kafka;
#   - `hostpulse run` (headless, release build);
#   - the tray app (release build) under Xvfb with its window closed, with it open, and after it
#     was opened and closed again.
#
# Each runs for the same time at the same rate (1 Hz and 10 Hz); bench/measure.py records CPU
# time (user+system, all processes of its session, so children and WebKit's helpers count),
# peak and steady RSS and PSS; bench/count.py counts what reached the broker. Then throughput:
# N values as fast as each can publish (HostPulse's real agent via the `throughput` example: a
# synthetic sampler of BENCH_VALUES_PER_ROW values per row at a 1 ms tick, the outbox a SQLite
# file under $OUT_DIR on disk; quixstreams 0.5.7, quixstreams 3.28.1, one value per row). Then
# the criterion benches. bench/report.py writes BENCHMARKS.md from the JSON results; nothing in
# it is typed by hand.
#
#   bash bench/compare.sh                              # 60 s per run, rates 1 and 10 Hz
#   BENCH_SECONDS=20 BENCH_RATES=1 bash bench/compare.sh   # a quick look
#
# HostPulse samples the real CPU down to 100 ms (it reads /proc/stat itself), so at 1 and 10 Hz
# both `hostpulse run` and the tray app measure the machine, as the Python programs do with psutil.
# Above 10 Hz `hostpulse run` publishes its synthetic signal instead and the app is not run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

SECONDS_PER_RUN=${BENCH_SECONDS:-60}
WARMUP=${BENCH_WARMUP:-10}
RATES=${BENCH_RATES:-"1 10"}
VALUES=${BENCH_VALUES:-1000000}
VALUES_PER_ROW=${BENCH_VALUES_PER_ROW:-1000}
OUT_DIR=${BENCH_OUT:-target/bench}
REPORT=${BENCH_REPORT:-BENCHMARKS.md}
mkdir -p "$OUT_DIR"
rm -f "$OUT_DIR"/*.json
# What is measured, recorded now: the report may be written again later (new notes) at a newer
# commit, and must still name this one. Uncommitted changes to the code are said so.
measured_commit="$(git rev-parse --short HEAD 2>/dev/null || echo '?')"
git diff --quiet HEAD -- . ':!BENCHMARKS.md' ':!bench/NOTES.md' 2>/dev/null || measured_commit+=" with uncommitted changes"
python3 -c 'import json, sys; json.dump({"commit": sys.argv[1], "date": sys.argv[2]}, open(sys.argv[3], "w"))' \
  "$measured_commit" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$OUT_DIR/measured.json"

# What only the comparison needs: collectd with write_kafka, psutil for the Python programs.
for p in collectd-core librdkafka1; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    say "installing $p (comparison only)"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null
  fi
done
for py in "$HOSTPULSE_QS057_PYTHON" "$HOSTPULSE_QS3_PYTHON"; do
  "$py" -c 'import psutil' 2>/dev/null || "$py" -m pip install -q -r bench/requirements.txt
done

say "building the release binaries (the headless agent as servers get it: profile server)"
cargo build --profile server -p hostpulse-cli
cargo build --release -p hostpulse-app
cargo build --release -p hostpulse-agent --example throughput
cargo build --release -p hostpulse-tests --example mock_broker

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BROKER="127.0.0.1:$PORT"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
setsid "$HOSTPULSE_TANSU" broker --listener-url "tcp://$BROKER" --advertised-listener-url "tcp://$BROKER" \
  --storage-engine memory://tansu/ >"$WORK/tansu.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

# quixstreams 0.5.7's bundled librdkafka and Debian's librdkafka (collectd's write_kafka) fail the
# API version handshake with tansu ("Read underflow"), so those two publish to librdkafka's mock
# cluster instead.
MOCK_TOPICS=()
for rate in $RATES; do MOCK_TOPICS+=("qs057-$rate" "collectd-$rate"); done
mkfifo "$WORK/mock-stdin"
./target/release/examples/mock_broker "${MOCK_TOPICS[@]}" tp-qs057 <"$WORK/mock-stdin" >"$WORK/mock.addr" &
PIDS+=($!)
exec 7>"$WORK/mock-stdin"
for _ in $(seq 100); do [ -s "$WORK/mock.addr" ] && break; sleep 0.1; done
MOCK="$(head -1 "$WORK/mock.addr")"
# tansu creates no topic on first use: every contender gets its topic made beforehand.
create_topics() {
  "$HOSTPULSE_QS3_PYTHON" - "$BROKER" "$@" <<'PY'
import sys
from confluent_kafka.admin import AdminClient, NewTopic
admin = AdminClient({"bootstrap.servers": sys.argv[1]})
for f in admin.create_topics([NewTopic(t, 1, 1) for t in sys.argv[2:]]).values():
    try:
        f.result()
    except Exception as e:
        if "already exists" not in str(e).lower():
            raise
PY
}

# The app's display (each app run gets a session bus of its own, below).
DISPLAY_NUM=$(( (RANDOM % 400) + 200 ))
Xvfb ":$DISPLAY_NUM" -screen 0 1280x800x24 -nolisten tcp >"$WORK/xvfb.log" 2>&1 &
PIDS+=($!)

measure() { # name rate broker topic -- command...
  local name=$1 rate=$2 at=$3 topic=$4
  shift 5
  say "$name at $rate Hz for $SECONDS_PER_RUN s"
  python3 bench/measure.py --duration "$SECONDS_PER_RUN" --warmup "$WARMUP" --log "$WORK/$name-$rate.log" \
    ${TRIGGER:+--trigger-at "${TRIGGER_AT:-5}" --trigger "$TRIGGER"} -- "$@" >"$WORK/m.json"
  sleep 2
  "$HOSTPULSE_QS3_PYTHON" bench/count.py "$at" "$topic" >"$WORK/c.json"
  python3 - "$name" "$rate" "$WORK/m.json" "$WORK/c.json" "$OUT_DIR/run-$name-$rate.json" <<'PY'
import json, sys
name, rate, m, c, out = sys.argv[1:]
r = {"name": name, "rate_hz": float(rate), **json.load(open(m)), **json.load(open(c))}
json.dump(r, open(out, "w"))
print(r)
PY
}

for rate in $RATES; do
  interval=$(python3 -c "print(1/$rate)")
  interval_ms=$(python3 -c "print(int(1000/$rate))")
  create_topics "qs3-$rate" "hostpulse-$rate" "app-closed-$rate" "app-open-$rate" "app-reopened-$rate"
  measure quickstart-0.5.7 "$rate" "$MOCK" "qs057-$rate" -- \
    "$HOSTPULSE_QS057_PYTHON" bench/quickstart_057.py --broker "$MOCK" --topic "qs057-$rate" --interval "$interval"
  measure quixstreams-3.28.1 "$rate" "$BROKER" "qs3-$rate" -- \
    "$HOSTPULSE_QS3_PYTHON" bench/quickstart_qs3.py --broker "$BROKER" --topic "qs3-$rate" --interval "$interval"
  sed -e "s/@INTERVAL@/$interval/" -e "s/@BROKER@/$MOCK/" -e "s/@TOPIC@/collectd-$rate/" \
    bench/collectd.conf.in >"$WORK/collectd-$rate.conf"
  measure collectd "$rate" "$MOCK" "collectd-$rate" -- /usr/sbin/collectd -f -C "$WORK/collectd-$rate.conf"
  if [ "$interval_ms" -ge 100 ]; then
    source_args=(--interval-ms "$interval_ms")
  else
    source_args=(--synthetic "$rate")
  fi
  measure hostpulse "$rate" "$BROKER" "hostpulse-$rate" -- env XDG_DATA_HOME="$WORK/data-cli-$rate" \
    ./target/server/hostpulse run --broker "$BROKER" --topic "hostpulse-$rate" --buffer-span-ms 100 "${source_args[@]}"
  if [ "$interval_ms" -ge 100 ]; then
    # "reopened": the window is opened at 1 s and closed again 5 s later (the window manager's
    # close button), before the warm-up ends; then what stays is measured (at 1 Hz only).
    windows="closed open"
    [ "$interval_ms" -ge 1000 ] && windows="closed open reopened"
    for window in $windows; do
      home="$WORK/app-$window-$rate"
      mkdir -p "$home/hostpulse"
      printf 'broker = "%s"\ntopic = "app-%s-%s"\ninterval_ms = %s\nbuffer_span_ms = 100\n' \
        "$BROKER" "$window" "$rate" "$interval_ms" >"$home/hostpulse/settings.toml"
      app_env=(env DISPLAY=":$DISPLAY_NUM" HOME="$home" XDG_CONFIG_HOME="$home" XDG_DATA_HOME="$home")
      # A session bus of its own per run: the app is single-instance on its bus, so an instance
      # left from an earlier run (or its window's second launch) must not take this one's place.
      bus="$(dbus-daemon --session --fork --print-address=1 --print-pid=1)"
      app_env+=(DBUS_SESSION_BUS_ADDRESS="$(sed -n 1p <<<"$bus")")
      # TRIGGER is set for this one call only (lower-case names here): a global one fired again in
      # the next rate's runs and left app instances running beside them.
      trigger="" trigger_at=5
      # A second launch shows the running app's window (single instance).
      [ "$window" = open ] && trigger="${app_env[*]} ./target/release/hostpulse-app"
      [ "$window" = reopened ] && trigger_at=1 && trigger="sh -c '${app_env[*]} ./target/release/hostpulse-app; sleep 5; \
DISPLAY=:$DISPLAY_NUM $HOSTPULSE_DESKTOP_PYTHON tests/python/x11_window.py close HostPulse'"
      TRIGGER="$trigger" TRIGGER_AT="$trigger_at" measure "app-window-$window" "$rate" "$BROKER" "app-$window-$rate" -- "${app_env[@]}" ./target/release/hostpulse-app
      kill "$(sed -n 2p <<<"$bus")" 2>/dev/null || true
      if pgrep -f "^./target/release/hostpulse-app" >/dev/null; then
        echo "an app instance outlived its run" >&2
        exit 1
      fi
    done
  fi
done

say "throughput: $VALUES values as fast as each can publish"
create_topics tp-hostpulse tp-qs3
tp() { # name topic -- command...
  local name=$1 topic=$2
  shift 3
  "$@" >"$WORK/tp.json" 2>"$WORK/tp-$name.log" || { echo "$name failed; see $WORK/tp-$name.log" >&2; return 0; }
  python3 - "$name" "$WORK/tp.json" "$OUT_DIR/throughput-$name.json" <<'PY'
import json, sys
name, src, out = sys.argv[1:]
line = [l for l in open(src) if l.startswith("{")][-1]
r = {"name": name, **json.loads(line)}
json.dump(r, open(out, "w"))
print(r)
PY
}
# The example keeps its outbox in a temporary directory under TMPDIR: on disk, as a user's is
# (not on a tmpfs /tmp).
OUTBOX_TMP="$(cd "$OUT_DIR" && pwd)"
tp hostpulse tp-hostpulse -- env TMPDIR="$OUTBOX_TMP" \
  ./target/release/examples/throughput "$BROKER" tp-hostpulse "$VALUES" "$VALUES_PER_ROW"
tp quickstart-0.5.7 tp-qs057 -- "$HOSTPULSE_QS057_PYTHON" bench/quickstart_057.py --broker "$MOCK" --topic tp-qs057 --throughput "$VALUES"
tp quixstreams-3.28.1 tp-qs3 -- "$HOSTPULSE_QS3_PYTHON" bench/quickstart_qs3.py --broker "$BROKER" --topic tp-qs3 --throughput "$VALUES"

say "latency from sample to acknowledgement (HostPulse, 10 Hz, 100 ms span, 60 s)"
TMPDIR="$OUTBOX_TMP" ./target/release/examples/throughput "$BROKER" tp-latency latency 10 60 \
  >"$OUT_DIR/latency-hostpulse.json"
cat "$OUT_DIR/latency-hostpulse.json"

if [ "${BENCH_CRITERION:-1}" = 1 ]; then
  say "criterion benches"
  cargo bench -p hostpulse-core --bench pipeline
  cargo bench -p hostpulse-agent --bench outbox
  # The process table's bench is named after this machine's process count: drop older counts.
  rm -rf target/criterion/process_table
  cargo bench -p hostpulse-agent --bench sampler
  # report.py reads every result under target/criterion: drop the retired burst bench's.
  rm -rf target/criterion/produce/burst_20k_values_100ms_span_to_tansu
  cargo bench -p hostpulse-tests --bench produce
fi

python3 bench/report.py "$OUT_DIR" "$REPORT" "bash bench/compare.sh (BENCH_SECONDS=$SECONDS_PER_RUN BENCH_RATES='$RATES' BENCH_VALUES=$VALUES BENCH_VALUES_PER_ROW=$VALUES_PER_ROW)"
say "wrote $REPORT"
