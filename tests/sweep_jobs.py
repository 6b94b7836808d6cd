"""Jobs for the sweep tests that need worker processes (module-level, so process pools can
pickle them; tests/ is on the workers' path)."""
import os
import signal
import time

import gengrad


def threads_job(config):
    return {"threads": gengrad.get_num_threads()}


def kill_worker_job(config):
    """Kills its own worker process when config["kill"] is set (an out-of-memory kill)."""
    if config["kill"]:
        os.kill(os.getpid(), signal.SIGKILL)
    return {"value": config["seed"] * 1.0}


def sleep_job(config):
    """Leaves its worker's pid in config["folder"], then sleeps config["seconds"]."""
    with open(os.path.join(config["folder"], f"{os.getpid()}.pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(config["seconds"])
    return {}
