#!/usr/bin/env bash
# Sets up what this needs (the agent's build dependencies, the tansu broker, the quixstreams 3
# venv: scripts/setup.sh with HOSTPULSE_SETUP_PARTS), builds HostPulse and shows the data flow: a local
# tansu broker on a free loopback port, `hostpulse run` publishing this machine's CPU load, and
# the quixstreams 3 reader printing each row as Quix sees it. Ctrl-C stops all three; HostPulse
# flushes, closes the stream and prints its summary. (The broker and the reader run in their own
# sessions, so the Ctrl-C meant for HostPulse does not stop the broker before HostPulse is done;
# both are stopped when the script ends, however it ends.)
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTPULSE_SETUP_PARTS="tansu venv-qs3" source scripts/setup.sh

say "building hostpulse (profile server: size-optimised, as the server package has it)"
cargo build --profile server -p hostpulse-cli
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
LOG_DIR="$(mktemp -d)"
say "starting tansu on 127.0.0.1:$PORT (log: $LOG_DIR/tansu.log)"
setsid "$HOSTPULSE_TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
  --storage-engine memory://tansu/ >"$LOG_DIR/tansu.log" 2>&1 &
TANSU_PID=$!
READER_PID=""
cleanup() {
  [ -n "$READER_PID" ] && kill "$READER_PID" 2>/dev/null || true
  kill "$TANSU_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
up=""
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && { up=1; break; }; sleep 0.1; done
[ -n "$up" ] || { echo "tansu did not start; its log: $LOG_DIR/tansu.log" >&2; exit 1; }

# The reader is the background job itself (setsid execs it in place), so READER_PID is the
# reader's own pid and `kill` reaches it; its output goes through sed, which ends with it.
(sleep 4; exec setsid "$HOSTPULSE_QS3_PYTHON" tests/python/read_qs3.py --broker "127.0.0.1:$PORT" --topic cpu-load \
  --rows 1000000 --timeout 86400 2>"$LOG_DIR/reader.log" > >(sed -u 's/^/quixstreams 3 read: /')) &
READER_PID=$!
say "publishing; Ctrl-C to stop"
trap 'true' INT
rc=0
./target/server/hostpulse run --broker "127.0.0.1:$PORT" --topic cpu-load "$@" || rc=$?
exit "$rc"
