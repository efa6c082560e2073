"""py_counter: a Python 3 program with two threads, for checkpoint/restart tests.

Usage: python3 -u py_counter.py [STEPS=60] [DELAY_MS=30]
The main thread counts 1..STEPS, printing "step i total=<hex>" (each line in one write, then
flushed) and sleeping DELAY_MS between steps. A second threading.Thread independently performs
STEPS rounds of its own accumulation, also sleeping DELAY_MS per round. After joining it, main
prints "result <hex>" combining both accumulators and the main thread's history list, so losing
either thread's state changes the result. Prints "start py_counter steps=N" first. Deterministic.
"""

import sys
import threading
import time

MASK = (1 << 64) - 1


def mix(x):
    x = (x ^ (x >> 31)) * 0x9E3779B97F4A7C15 & MASK
    return (x ^ (x >> 29)) & MASK


class Worker(threading.Thread):
    """Accumulates on its own, in parallel with the main thread."""

    def __init__(self, rounds, delay):
        super().__init__(name="worker")
        self.rounds = rounds
        self.delay = delay
        self.acc = 1

    def run(self):
        for i in range(1, self.rounds + 1):
            self.acc = mix(self.acc + i)
            time.sleep(self.delay)


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    delay = (int(sys.argv[2]) if len(sys.argv) > 2 else 30) / 1000.0
    out = sys.stdout
    out.write(f"start py_counter steps={steps}\n")
    out.flush()

    worker = Worker(steps, delay)
    worker.start()
    total = 0
    history = []
    for i in range(1, steps + 1):
        total = mix(total ^ i)
        history.append(total)
        out.write(f"step {i} total={total:016x}\n")
        out.flush()
        time.sleep(delay)
    worker.join()

    result = mix(total ^ worker.acc)
    for h in history:
        result = mix(result ^ h)
    out.write(f"result {result:016x}\n")
    out.flush()


if __name__ == "__main__":
    main()
