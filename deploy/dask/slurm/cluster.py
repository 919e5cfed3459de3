#!/usr/bin/env python3
"""A Dask cluster on a SLURM queue for `iiifserver convert --cluster` (dask-jobqueue).

Run it on the login node, in the environment where iiifserver is installed with its cluster
extra (``pip install 'iiifserver[cluster]' dask-jobqueue``), and leave it running: it submits
SLURM jobs, each running Dask workers, prints the scheduler's address, and holds the cluster
until Ctrl-C. In a second shell on the login node:

    iiifserver convert /shared/masters --out /shared/images --cluster tcp://HOST:PORT

Masters and outputs must be on a file system every node mounts (the output folder holds the
journal, ``.iiifserver-convert.sqlite``). Stopping the campaign (Ctrl-C here, or the jobs'
walltime) and starting it again resumes it: run the same convert command.

Adjust the queue, account, sizes and walltime below to your site.
"""

from __future__ import annotations

import signal
import sys

from dask_jobqueue import SLURMCluster

JOBS = 8  # SLURM jobs (nodes); each runs PROCESSES workers
CORES = 16  # cores per job
PROCESSES = 8  # Dask workers per job: one master at a time each, libvips uses CORES / PROCESSES threads
MEMORY_GB = 64  # memory per job
# The MEMORY resource of each worker: the bytes its conversion may take (iiifserver matches each
# master's estimate against it). The job's memory shared among its workers, less a quarter for
# Python, libvips and Dask themselves.
WORKER_MEMORY = MEMORY_GB * 2**30 // PROCESSES * 3 // 4


def main() -> int:
    cluster = SLURMCluster(
        queue="batch",
        account="digitisation",
        cores=CORES,
        processes=PROCESSES,
        memory=f"{MEMORY_GB}GB",
        walltime="24:00:00",
        job_name="iiif-convert",
        local_directory="$TMPDIR",
        log_directory="dask-logs",
        worker_extra_args=["--resources", f"MEMORY={WORKER_MEMORY}"],
        # libvips' threads per conversion: the job's cores shared among its worker processes.
        job_script_prologue=["source ~/iiifserver/.venv/bin/activate", f"export VIPS_CONCURRENCY={CORES // PROCESSES}"],
    )
    cluster.scale(jobs=JOBS)
    print(f"iiifserver convert SOURCES --out OUT --cluster {cluster.scheduler_address}", flush=True)
    print("Ctrl-C stops the cluster (its SLURM jobs are cancelled).", file=sys.stderr, flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        cluster.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
