"""tree_pool: Python's process pools (a process tree, issue 13).

Usage: tree_pool.py pool|executor [N=100] [DELAY=0.05]
`pool`: multiprocessing.Pool(2) (fork start method, tasks and results through pipes and a
shared semaphore); `executor`: concurrent.futures.ProcessPoolExecutor(2). Each task sleeps DELAY
and hashes its number; the parent prints "step K" per result in order and "result" of all of
them and of the workers' pids seen (two distinct workers, the same across a restart: a restart
that started new workers, or lost the old ones, changes nothing in the hashes, but the pool's
pipes and queues must still work).
"""
import concurrent.futures
import hashlib
import multiprocessing as mp
import os
import sys
import time


def work(i):
    time.sleep(DELAY)
    return i, hashlib.sha256(str(i).encode()).hexdigest()[:8], os.getpid()


DELAY = 0.05


def main():
    global DELAY
    mode = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    DELAY = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05
    mp.set_start_method("fork")
    print(f"start tree_pool {mode} n={n}", flush=True)
    acc = hashlib.sha256()
    pids = set()
    if mode == "pool":
        with mp.Pool(2) as p:
            results = p.imap(work, range(n))
            for k, (i, h, pid) in enumerate(results, 1):
                assert i == k - 1, (i, k)
                acc.update(h.encode())
                pids.add(pid)
                print(f"step {k} {h}", flush=True)
    else:
        with concurrent.futures.ProcessPoolExecutor(2) as ex:
            for k, (i, h, pid) in enumerate(ex.map(work, range(n)), 1):
                assert i == k - 1, (i, k)
                acc.update(h.encode())
                pids.add(pid)
                print(f"step {k} {h}", flush=True)
    assert len(pids) <= 2, pids
    print("result", acc.hexdigest()[:16], flush=True)


if __name__ == "__main__":
    main()
