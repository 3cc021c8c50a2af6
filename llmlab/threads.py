"""Torch threads per job: cores // parallel jobs under joblib, cpus_per_task under submitit, so
that parallel jobs never oversubscribe the cores."""

from __future__ import annotations

import os


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS
        return os.cpu_count() or 1


def launcher_name() -> str:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return "none"
    target = str(HydraConfig.get().launcher.get("_target_", ""))
    return target.rsplit(".", 1)[-1] or "?"


def auto_threads() -> int | None:
    """Torch threads for this job when `threads: null`: cores // parallel jobs, so jobs never oversubscribe.

    joblib launcher: n_jobs jobs share the machine; submitit: the job's cpus_per_task; the basic
    launcher (one job at a time): torch's own default (all cores).
    """
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().launcher
    cores = cpu_cores()
    n_jobs = launcher.get("n_jobs")
    if n_jobs is not None:
        n_jobs = int(n_jobs)
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores
        return max(1, cores // parallel)
    cpus = launcher.get("cpus_per_task")
    if cpus:
        return int(cpus)
    return None


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (`threads`, or auto_threads() when null); return the count in use."""
    import torch

    want = threads or auto_threads()
    if want:
        torch.set_num_threads(int(want))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # for any process the job starts
            os.environ[var] = str(int(want))
    return torch.get_num_threads()
