"""Runs a command in a session of its own for --duration seconds, then stops it with SIGTERM, and
measures every process of that session (so children, e.g. WebKit's helpers, are included):

  cpu_s         user+system CPU seconds of all its processes, start to stop
  cpu_steady_s  the same after the first --warmup seconds (start-up left out)
  rss_peak_mb, rss_steady_mb, pss_peak_mb, pss_steady_mb   summed over the processes, sampled every
                second; "steady" is the median after the warm-up; PSS splits shared pages fairly
  uss_steady_mb private memory (pages no other process maps), summed, median after the warm-up
  cpu_exact_steady_s  CPU seconds of the steady part from the scheduler's own accounting
                (/proc/<pid>/task/<tid>/schedstat, ns), summed over the threads: /proc/<pid>/stat
                counts in clock ticks (10 ms) charged to whatever runs at the tick, which overcharges
                threads that wake on a timer, as an idle agent's do
  threads       per process and thread name (threads of one name summed), over the steady part:
                CPU ms per 30 s (schedstat) and wake-ups per second (voluntary context switches:
                each one is the thread going to sleep, so one wake-up follows)
  mappings      for the process with the largest PSS at the end: the mappings (file, or [heap],
                [anon], …) holding most of its PSS, with their private part

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
    rss = pss = uss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
                elif line.startswith(("Private_Clean:", "Private_Dirty:")):
                    uss += int(line.split()[1])
    except OSError:
        pass
    return rss, pss, uss


def comm(path):
    with open(path) as f:
        return f.read().strip()


def threads(pid):
    """{(process name, thread name, tid): (cpu ns, voluntary switches)} of one process."""
    out = {}
    pname = comm(f"/proc/{pid}/comm")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            base = f"/proc/{pid}/task/{tid}"
            with open(f"{base}/schedstat") as f:
                ns = int(f.read().split()[0])
            switches = 0
            with open(f"{base}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        switches = int(line.split()[1])
            out[(pname, comm(f"{base}/comm"), tid)] = (ns, switches)
        except (OSError, ValueError, IndexError):
            continue
    return out


def mappings(pid, top=12):
    """The mappings of `pid` by PSS: [(name, pss kB, private kB)], largest first."""
    by_name = {}
    name = None
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split()
                if not head:
                    continue
                if "-" in head[0] and not head[0].endswith(":"):
                    name = head[5] if len(head) > 5 else "[anon]"
                    by_name.setdefault(name, [0, 0])
                elif head[0] == "Pss:":
                    by_name[name][0] += int(head[1])
                elif head[0] in ("Private_Clean:", "Private_Dirty:"):
                    by_name[name][1] += int(head[1])
    except OSError:
        return []
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1][0])[:top]
    return [(os.path.basename(n) if n.startswith("/") else n, p, u) for n, (p, u) in ranked]


log = open(args.log, "w") if args.log else subprocess.DEVNULL
proc = subprocess.Popen(cmd, start_new_session=True, stdout=log, stderr=log)
sid = proc.pid
cpu = {}
cpu_at_warmup = None
rss_samples, pss_samples, uss_samples = [], [], []
threads_at_warmup, threads_now, warmup_time, biggest = None, {}, None, None
start = time.time()
triggered = False
while time.time() - start < args.duration:
    total_rss = total_pss = total_uss = 0
    tasks, largest = {}, (0, None)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            session, ticks = stat(entry)
            if session != sid:
                continue
            cpu[entry] = ticks
            rss, pss, uss = memory(entry)
            total_rss += rss
            total_pss += pss
            total_uss += uss
            tasks.update({(entry, *k): v for k, v in threads(entry).items()})
            largest = max(largest, (pss, entry), key=lambda x: x[0])
        except (OSError, ValueError, IndexError):
            continue
    elapsed = time.time() - start
    if elapsed >= args.warmup:
        if cpu_at_warmup is None:
            cpu_at_warmup = sum(cpu.values())
            threads_at_warmup, warmup_time = tasks, time.time()
        rss_samples.append(total_rss)
        pss_samples.append(total_pss)
        uss_samples.append(total_uss)
        threads_now, now_time = tasks, time.time()
        if largest[1] is not None:
            biggest = largest[1]
    if args.trigger and not triggered and elapsed >= (args.trigger_at or 0):
        trigger = subprocess.Popen(shlex.split(args.trigger), stdout=log, stderr=log)
        triggered = True
    if proc.poll() is not None:
        print(f"{cmd[0]} exited early with {proc.returncode}", file=sys.stderr)
        break
    time.sleep(1)
ran = time.time() - start
if triggered:
    try:
        trigger.wait(timeout=10)  # a second instance hands over and exits
    except subprocess.TimeoutExpired:
        trigger.kill()
        trigger.wait()
total = sum(cpu.values())
top_mappings = mappings(biggest) if biggest else []
per_thread = {}
exact_ns = 0
if threads_at_warmup is not None and now_time > warmup_time:
    span = now_time - warmup_time
    for key, (ns, switches) in threads_now.items():
        n0, s0 = threads_at_warmup.get(key, (0, 0))
        exact_ns += ns - n0
        name = (key[1], key[2])
        ms, wakes = per_thread.get(name, (0.0, 0.0))
        per_thread[name] = (ms + (ns - n0) / 1e6 * 30 / span, wakes + (switches - s0) / span)
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
    "cpu_exact_steady_s": round(exact_ns / 1e9, 3),
    "rss_peak_mb": mb(max(rss_samples, default=0)),
    "rss_steady_mb": mb(statistics.median(rss_samples) if rss_samples else 0),
    "pss_peak_mb": mb(max(pss_samples, default=0)),
    "pss_steady_mb": mb(statistics.median(pss_samples) if pss_samples else 0),
    "uss_steady_mb": mb(statistics.median(uss_samples) if uss_samples else 0),
    "threads": sorted(([p, t, round(ms, 1), round(w, 1)] for (p, t), (ms, w) in per_thread.items()),
                      key=lambda r: (-r[2], -r[3])),
    "mappings": [[n, mb(p), mb(u)] for n, p, u in top_mappings],
}))
