"""Timings of gengrad.sweep: the same descent_job sweep serially, on the default process pool
and on a local Dask cluster (start-up reported apart), and the per-config overhead of writing
result files and of resuming. Run: python bench/sweeps.py [--configs 40] [--steps 2000]."""
import argparse
import tempfile
import time

import numpy as np

import gengrad
from gengrad import jobs


def timed(run):
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", type=int, default=40)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    configs = [dict(seed=s, steps=args.steps, tol=0.0) for s in range(args.configs)]
    serial, t_serial = timed(lambda: gengrad.sweep(jobs.descent_job, configs, "serial"))
    pool, t_pool = timed(lambda: gengrad.sweep(jobs.descent_job, configs, max_workers=args.workers))
    from dask.distributed import Client, LocalCluster
    start = time.perf_counter()
    with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        t_start = time.perf_counter() - start
        with tempfile.TemporaryDirectory() as out:
            dask, t_dask = timed(lambda: gengrad.sweep(jobs.descent_job, configs, client.get_executor(), out=out))
    same = all(np.array_equal(serial[k], pool[k]) and np.array_equal(serial[k], dask[k]) for k in serial)
    print(f"{args.configs} descent jobs of {args.steps} steps: serial {t_serial:.2f} s, process pool "
          f"({args.workers}) {t_pool:.2f} s, Dask {t_dask:.2f} s (+ {t_start:.2f} s cluster start); "
          f"tables bitwise equal: {same}")
    tiny = [dict(seed=s, steps=1) for s in range(200)]
    with tempfile.TemporaryDirectory() as out:
        _, t_write = timed(lambda: gengrad.sweep(jobs.descent_job, tiny, "serial", out=out))
        _, t_resume = timed(lambda: gengrad.sweep(jobs.descent_job, tiny, "serial", out=out))
    _, t_plain = timed(lambda: gengrad.sweep(jobs.descent_job, tiny, "serial"))
    print(f"per config: {1e3 * t_plain / 200:.2f} ms without files, {1e3 * t_write / 200:.2f} ms with "
          f"(atomic write + fsync); resuming 200 finished configs {1e3 * t_resume:.0f} ms")


if __name__ == "__main__":
    main()
