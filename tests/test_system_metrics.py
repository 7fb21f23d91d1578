"""``trainables.system_metrics``: what a trial's own process used, measured between two reads. The
trial reports it with every epoch (test_train); the driver logs it as the trial run's ``system/``
metrics (test_serving's test_run_digits_end_to_end)."""

import time

import torch

from trainables.system_metrics import SystemMeter

CPU = "system/cpu_utilization_percentage"


def _busy(seconds: float) -> None:
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        a = torch.tanh(a @ b)


def test_the_cpu_utilization_is_the_processs_cpu_time_over_the_wall_time_per_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # 100% is this one thread busy the whole interval
    try:
        meter = SystemMeter(torch.device("cpu"))
        wall, cpu = time.perf_counter(), time.process_time()  # the same interval, measured independently
        _busy(0.5)
        busy = meter.read()
        expected = 100 * (time.process_time() - cpu) / (time.perf_counter() - wall)
        time.sleep(0.5)
        idle = meter.read()  # the interval since the last read only
    finally:
        torch.set_num_threads(previous)
    # Under a loaded machine (the suite's other worker) the busy thread may get less than a core:
    # the meter must say what the process got, not what it asked for.
    assert abs(busy[CPU] - expected) < 10, (busy, expected)
    assert busy[CPU] > idle[CPU] + 20, (busy, idle)
    assert busy["system/process_memory_rss_megabytes"] > 50  # this process holds torch
    assert not any("gpu" in key for key in busy)  # a CPU trial reports no GPU metrics
