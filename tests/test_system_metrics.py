"""``trainables.system_metrics``: what a trial's own process used, measured between two reads. The
trial reports it with every epoch (test_train); the driver logs it as the trial run's ``system/``
metrics (test_end_to_end)."""

import time

import torch

from trainables.system_metrics import SystemMeter

CPU = "system/cpu_utilization_percentage"


def test_a_busy_thread_reads_near_100_percent_and_an_idle_one_near_0():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # 100% is this one thread busy the whole interval
    try:
        meter = SystemMeter(torch.device("cpu"))
        a, b = torch.randn(256, 256), torch.randn(256, 256)
        started = time.perf_counter()
        while time.perf_counter() - started < 0.5:
            a = torch.tanh(a @ b)
        busy = meter.read()
        time.sleep(0.5)
        idle = meter.read()  # the interval since the last read only
    finally:
        torch.set_num_threads(previous)
    assert 60 <= busy[CPU] <= 130, busy
    assert idle[CPU] <= 20, idle
    assert busy["system/process_memory_rss_megabytes"] > 50  # this process holds torch
    assert not any("gpu" in key for key in busy)  # a CPU trial reports no GPU metrics
