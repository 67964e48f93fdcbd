"""What the Python peers share: arguments, the dummy terminal, the JSON lines to the bench, and
the two runs (latency, ingest) around an `expect(patterns, timeout) -> index` of the peer's own.

The dummy terminal is a `sleep` process; cutting its power is SIGKILL then waitpid, exactly as the
Rust contenders do. Times are time.monotonic_ns(), CLOCK_MONOTONIC like the bench's.
"""

import argparse
import json
import os
import re
import resource
import signal
import time
import tomllib


def parse_args(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("mode", choices=["latency", "ingest"])
    parser.add_argument("--port", required=True, help="serial device to read, e.g. /dev/pts/3")
    parser.add_argument("--pattern", help="latency: regex of the trigger line")
    parser.add_argument("--firings", type=int, help="latency: how many triggers to act on")
    parser.add_argument("--profile", help="ingest: terminal profile whose event patterns to expect")
    parser.add_argument("--end", help="ingest: regex of the stream's last line")
    return parser.parse_args()


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


def power_on():
    return os.posix_spawnp("sleep", ["sleep", "1000"], os.environ)


def power_off(pid):
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def cpu_ns():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return int((usage.ru_utime + usage.ru_stime) * 1e9)


def run(args, expect):
    """Runs the mode of `args` with `expect(patterns, timeout) -> index`. Patterns are compiled here
    without pexpect's default re.DOTALL, so that `.*` stays within a line as in the profile."""
    if args.mode == "latency":
        trigger = re.compile(args.pattern.encode())
        pid = power_on()
        emit("ready")
        for _ in range(args.firings):
            expect([trigger], 10)
            power_off(pid)
            emit("fired", done_ns=time.monotonic_ns())
            pid = power_on()
            emit("ready")
        power_off(pid)
        return
    with open(args.profile, "rb") as profile:
        patterns = [re.compile(event["pattern"].encode()) for event in tomllib.load(profile)["events"]]
    patterns.append(re.compile(args.end.encode()))
    end = len(patterns) - 1
    events = 0
    start = cpu_ns()
    emit("ready")
    while expect(patterns, 60) != end:
        events += 1
    emit("ingested", end_ns=time.monotonic_ns(), cpu_ns=cpu_ns() - start, events=events)
