"""What a trial's process used while it trained: MLflow's system metrics, measured where it trains.

The driver logs every trial's metrics (``tuning.trial_runs``), so MLflow's own system-metrics
monitor, which samples the process that logs, would measure the driver, not the trial. The trial
measures itself instead, once per epoch, and reports these with the epoch's metrics; their
``system/`` prefix is what puts them in the MLflow UI's "System metrics" view of the trial's run.

=========================================  ==================================================================
``system/cpu_utilization_percentage``      the process's CPU time over the epoch's wall time, per thread it
                                           may use (``torch.get_num_threads()``): 100 is every thread busy
``system/process_memory_rss_megabytes``    the process's resident memory at the epoch's end
``system/gpu_0_utilization_percentage``    CUDA: the share of the epoch's last sample period the GPU ran a
                                           kernel (NVML, through ``nvidia-ml-py``)
``system/gpu_0_memory_usage_megabytes``    CUDA: the memory PyTorch's allocator holds on the GPU (reserved)
``system/gpu_0_peak_memory_megabytes``     CUDA: the most the epoch's tensors occupied at once
=========================================  ==================================================================

In a multi-worker trial rank 0 reports, so the metrics are rank 0's process and GPU. Cost: one
read is about 10 µs on the CPU (two clocks and one ``psutil`` call), 0.1% of a digits epoch
(``benchmarks/system_metrics.py``); on CUDA it adds the allocator's counters and one NVML query.
"""

from __future__ import annotations

import time

import psutil
import torch

MEGABYTE = 2**20


class SystemMeter:
    """Measures this process between two :meth:`read` calls (the first interval starts at creation).

    Args:
        device: where the trial trains; on CUDA the GPU's metrics are added.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.process = psutil.Process()
        self._since = self._now()
        if device.type == "cuda":  # the first interval's peak is its own, not the model build's
            torch.cuda.reset_peak_memory_stats(device)

    @staticmethod
    def _now() -> tuple[float, float]:
        """(wall seconds, the process's CPU seconds of every thread).

        ``process_time`` counts in nanoseconds; ``psutil``'s CPU times count in 10 ms ticks, which
        read 0 for a short epoch.
        """
        return time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        """The ``system/...`` metrics of the interval since the last read (or since creation)."""
        (wall_0, cpu_0), (wall_1, cpu_1) = self._since, self._now()
        self._since = (wall_1, cpu_1)
        threads = max(torch.get_num_threads(), 1)
        metrics = {
            "system/cpu_utilization_percentage": 100.0 * (cpu_1 - cpu_0) / max(wall_1 - wall_0, 1e-9) / threads,
            "system/process_memory_rss_megabytes": self.process.memory_info().rss / MEGABYTE,
        }
        if self.device.type == "cuda":
            metrics |= _gpu_metrics(self.device)
        return metrics


def _gpu_metrics(device: torch.device) -> dict[str, float]:
    """The GPU's metrics (named ``gpu_0`` after this process's first visible GPU, as Ray assigns it);
    the peak is reset for the next epoch."""
    metrics = {
        "system/gpu_0_memory_usage_megabytes": torch.cuda.memory_reserved(device) / MEGABYTE,
        "system/gpu_0_peak_memory_megabytes": torch.cuda.max_memory_allocated(device) / MEGABYTE,
    }
    torch.cuda.reset_peak_memory_stats(device)
    try:
        metrics["system/gpu_0_utilization_percentage"] = float(torch.cuda.utilization(device))
    except Exception:  # noqa: BLE001 - NVML missing or refused (a container without it): memory only
        pass
    return metrics
