#!/usr/bin/env bash
# Soak run (not part of CI): `hostpulse run` (release) publishing a synthetic signal at 100 Hz to a
# local tansu broker for an hour, with the broker stopped for a stretch in the middle (samples then
# wait in the outbox on disk). Every minute it records the agent's resident memory (VmRSS, VmHWM),
# CPU time and the outbox file size; at the end it stops the agent with SIGTERM, checks its
# summary and writes the table to SOAK.md.
#
#   bash scripts/soak.sh                 # 60 minutes, broker down from minute 20 to 30
#   SOAK_MINUTES=10 OUTAGE_FROM=3 OUTAGE_TO=5 bash scripts/soak.sh   # a shorter try
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

MINUTES=${SOAK_MINUTES:-60}
OUTAGE_FROM=${OUTAGE_FROM:-20}
OUTAGE_TO=${OUTAGE_TO:-30}
RATE=${SOAK_HZ:-100}
OUT=${SOAK_REPORT:-SOAK.md}

say "building hostpulse (release)"
cargo build --release -p hostpulse-cli
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK="$(mktemp -d)"
TANSU_PID=""
AGENT_PID=""
start_tansu() {
  setsid "$HOSTPULSE_TANSU" broker --listener-url "tcp://127.0.0.1:$PORT" --advertised-listener-url "tcp://127.0.0.1:$PORT" \
    --storage-engine memory://tansu/ >>"$WORK/tansu.log" 2>&1 &
  TANSU_PID=$!
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return; sleep 0.1; done
  echo "tansu did not start" >&2
  exit 1
}
cleanup() {
  [ -n "$AGENT_PID" ] && kill "$AGENT_PID" 2>/dev/null || true
  [ -n "$TANSU_PID" ] && kill "$TANSU_PID" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
start_tansu

say "soak: $RATE Hz for $MINUTES min, broker down from minute $OUTAGE_FROM to $OUTAGE_TO (work dir $WORK)"
XDG_DATA_HOME="$WORK/data" ./target/release/hostpulse run --synthetic "$RATE" --broker "127.0.0.1:$PORT" \
  --topic soak --stream-id soak >"$WORK/agent.out" 2>"$WORK/agent.log" &
AGENT_PID=$!
OUTBOX="$WORK/data/hostpulse/outbox/cli.sqlite3"
TICKS=$(getconf CLK_TCK)
rows=""
sample() {
  local m=$1 state=$2
  local rss hwm cpu_ticks cpu_s outbox_kb
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$AGENT_PID/status")
  hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$AGENT_PID/status")
  cpu_ticks=$(awk '{print $14 + $15}' "/proc/$AGENT_PID/stat")
  cpu_s=$(awk -v t="$cpu_ticks" -v h="$TICKS" 'BEGIN {printf "%.1f", t / h}')
  outbox_kb=$(( ( $(stat -c %s "$OUTBOX" 2>/dev/null || echo 0) + $(stat -c %s "$OUTBOX-wal" 2>/dev/null || echo 0) ) / 1024 ))
  rows+="| $m | $state | $((rss / 1024)).$(( (rss % 1024) * 10 / 1024 )) | $((hwm / 1024)).$(( (hwm % 1024) * 10 / 1024 )) | $cpu_s | $outbox_kb |"$'\n'
  echo "minute $m ($state): RSS ${rss} kB, peak ${hwm} kB, CPU ${cpu_s} s, outbox ${outbox_kb} KiB"
}
sleep 5
sample 0 up
for m in $(seq 1 "$MINUTES"); do
  sleep 60
  state=up
  if [ "$m" -eq "$OUTAGE_FROM" ]; then kill "$TANSU_PID"; wait "$TANSU_PID" 2>/dev/null || true; TANSU_PID=""; fi
  if [ "$m" -eq "$OUTAGE_TO" ]; then start_tansu; fi
  if [ -z "$TANSU_PID" ]; then state=down; fi
  sample "$m" "$state"
done
sleep 20 # let the outbox drain after the outage
kill -TERM "$AGENT_PID"
wait "$AGENT_PID" || true
AGENT_PID=""
summary=$(grep "samples taken" "$WORK/agent.out" || echo "no summary")
echo "$summary"

{
  echo "# Soak run"
  echo
  echo "\`bash scripts/soak.sh\` (SOAK_MINUTES=$MINUTES OUTAGE_FROM=$OUTAGE_FROM OUTAGE_TO=$OUTAGE_TO SOAK_HZ=$RATE),"
  echo "$(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD), $(nproc) cores, $(uname -sr)."
  echo
  echo "\`hostpulse run --synthetic $RATE\` (release build) to a local tansu broker (memory storage); the"
  echo "broker is stopped from minute $OUTAGE_FROM to $OUTAGE_TO, so samples wait in the outbox on disk."
  echo "RSS and peak are the agent's VmRSS and VmHWM; CPU is user+system time since start;"
  echo "outbox is the size of the SQLite file and its WAL (SQLite reuses freed pages, the file does not shrink)."
  echo
  echo "| minute | broker | RSS MiB | peak RSS MiB | CPU s | outbox KiB |"
  echo "|---:|---|---:|---:|---:|---:|"
  printf "%s" "$rows"
  echo
  echo "Agent summary at the end: \`$summary\`"
} >"$OUT"
say "wrote $OUT"
