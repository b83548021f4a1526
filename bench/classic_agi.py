#!/usr/bin/env python3
"""The old way: an AGI script Asterisk spawns per call, on its stdin/stdout.

Copied into the Asterisk root and run by the chroot's python3; standard library only.
Sends the same three SET VARIABLE commands as the FastAGI rows and appends each round trip
(in seconds) to the file named by its first argument: one short O_APPEND write per call, so
concurrent scripts never interleave lines.
"""

import os
import sys
import time

COMMANDS = ['SET VARIABLE BENCH_A "1"', 'SET VARIABLE BENCH_B "2"', 'SET VARIABLE BENCH_C "3"']


def main() -> None:
    while sys.stdin.readline().strip():
        pass
    times = []
    for command in COMMANDS:
        started = time.perf_counter()
        sys.stdout.write(command + "\n")
        sys.stdout.flush()
        answer = sys.stdin.readline()
        while answer.startswith("HANGUP"):
            answer = sys.stdin.readline()
        times.append(time.perf_counter() - started)
        if not answer.startswith("200"):
            break
    if len(sys.argv) > 1:
        fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, ("".join(f"{t:.9f}\n" for t in times)).encode())
        os.close(fd)


if __name__ == "__main__":
    main()
