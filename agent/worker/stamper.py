"""Timestamps a process task's output: run as ``python -I stamper.py <log file>`` with the
task's stdout and stderr on stdin; appends each line to the file as
``<RFC 3339 nanosecond timestamp> <text>`` (the layout Docker's logs API gives), and ends
when the task and whatever it started have closed their output. It runs in a session of its
own, so it outlives an agent restart just as the task does. Standard library only: it starts
as a plain script, not through the agent package.
"""

import sys
import time


def _stamp(ns: int) -> bytes:
    secs, frac = divmod(ns, 1_000_000_000)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z ").encode()


def main(path: str) -> None:
    with open(path, "ab", buffering=0) as out:
        for line in sys.stdin.buffer:
            out.write(_stamp(time.time_ns()) + (line if line.endswith(b"\n") else line + b"\n"))


if __name__ == "__main__":
    main(sys.argv[1])
