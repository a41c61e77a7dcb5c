"""Runs a command in a session of its own for --duration seconds, then stops it with SIGTERM, and
measures every process of that session (so children, e.g. WebKit's helpers, are included):

  cpu_s         user+system CPU seconds of all its processes, start to stop
  cpu_steady_s  the same after the first --warmup seconds (start-up left out)
  rss_peak_mb, rss_steady_mb, pss_peak_mb, pss_steady_mb   summed over the processes, sampled every
                second; "steady" is the median after the warm-up; PSS splits shared pages fairly

  python3 bench/measure.py --duration 60 --warmup 10 [--trigger-at 5 --trigger "cmd"] -- cmd args...

Prints one JSON object. Run as root (PSS of every process is readable then).
"""
import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--duration", type=float, required=True)
parser.add_argument("--warmup", type=float, default=10)
parser.add_argument("--trigger-at", type=float)
parser.add_argument("--trigger")
parser.add_argument("--log")
parser.add_argument("cmd", nargs=argparse.REMAINDER)
args = parser.parse_args()
cmd = args.cmd[1:] if args.cmd and args.cmd[0] == "--" else args.cmd
HZ = os.sysconf("SC_CLK_TCK")


def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    fields = text[text.rindex(")") + 2:].split()
    # after the command: state(0) ppid(1) pgrp(2) session(3) ... utime(11) stime(12)
    return int(fields[3]), int(fields[11]) + int(fields[12])


def memory(pid):
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


log = open(args.log, "w") if args.log else subprocess.DEVNULL
proc = subprocess.Popen(cmd, start_new_session=True, stdout=log, stderr=log)
sid = proc.pid
cpu = {}
cpu_at_warmup = None
rss_samples, pss_samples = [], []
start = time.time()
triggered = False
while time.time() - start < args.duration:
    total_rss = total_pss = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            session, ticks = stat(entry)
            if session != sid:
                continue
            cpu[entry] = ticks
            rss, pss = memory(entry)
            total_rss += rss
            total_pss += pss
        except (OSError, ValueError, IndexError):
            continue
    elapsed = time.time() - start
    if elapsed >= args.warmup:
        if cpu_at_warmup is None:
            cpu_at_warmup = sum(cpu.values())
        rss_samples.append(total_rss)
        pss_samples.append(total_pss)
    if args.trigger and not triggered and elapsed >= (args.trigger_at or 0):
        subprocess.Popen(shlex.split(args.trigger), stdout=log, stderr=log)
        triggered = True
    if proc.poll() is not None:
        print(f"{cmd[0]} exited early with {proc.returncode}", file=sys.stderr)
        break
    time.sleep(1)
ran = time.time() - start
total = sum(cpu.values())
try:
    os.killpg(sid, signal.SIGTERM)
except ProcessLookupError:
    pass
try:
    proc.wait(timeout=20)
except subprocess.TimeoutExpired:
    os.killpg(sid, signal.SIGKILL)
    proc.wait()
mb = lambda kb: round(kb / 1024, 1)
print(json.dumps({
    "seconds": round(ran, 1),
    "exit_early": proc.returncode if ran < args.duration - 1 else None,
    "cpu_s": round(total / HZ, 2),
    "cpu_steady_s": round((total - (cpu_at_warmup or 0)) / HZ, 2),
    "rss_peak_mb": mb(max(rss_samples, default=0)),
    "rss_steady_mb": mb(statistics.median(rss_samples) if rss_samples else 0),
    "pss_peak_mb": mb(max(pss_samples, default=0)),
    "pss_steady_mb": mb(statistics.median(pss_samples) if pss_samples else 0),
}))
