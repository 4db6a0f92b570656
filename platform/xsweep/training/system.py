"""What a trial costs: its device-seconds, its peak memory, and its system metrics over time.

The system metrics are sampled in the trial's process by one background thread and travel with the
epoch's report (contract.TrialReport.system) to the driver, which logs them like every other metric:
their `system/` names put them on the MLflow UI's System metrics tab of the trial's run. They
describe the trial's own process and device, not the whole machine (a node runs several trials).
Needs only torch and the standard library: the GPU check runs `fit` where psutil is not installed.
"""

from __future__ import annotations

import os
import resource
import threading
import time

import torch

SAMPLE_SECONDS = 10.0  # MLflow's own system-metrics interval

CPU = "system/process_cpu_utilization_percentage"  # of one core: 200 is two cores busy
MEMORY = "system/process_memory_rss_megabytes"
GPU_MEMORY = "system/gpu_memory_allocated_megabytes"
GPU_UTILIZATION = "system/gpu_utilization_percentage"


def peak_memory_bytes(device: torch.device) -> int:
    """The most memory the trial has held: on a GPU, torch's peak allocation on the device; on a
    CPU, the peak resident size of the trial's process (its loader processes not included)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports kB


def _resident_megabytes() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class SystemSampler:
    """Samples the trial's system metrics every `interval` seconds and when asked (each epoch's end).

    Each sample is (milliseconds since the epoch, step, {name: value}); the step is the trial's
    device-seconds when it was taken, so a resumed trial's samples go on where they stopped.
    """

    def __init__(self, device: torch.device, *, interval: float = SAMPLE_SECONDS, seconds_before: float = 0.0):
        self.device, self.interval, self.seconds_before = device, interval, seconds_before
        self._samples: list = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = self._last_wall = time.perf_counter()
        self._last_cpu = time.process_time()
        self._thread = threading.Thread(target=self._run, name="xsweep-system-metrics", daemon=True)

    def __enter__(self) -> SystemSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        with self._lock:
            busy = (cpu - self._last_cpu) / max(now - self._last_wall, 1e-9)
            self._last_wall, self._last_cpu = now, cpu
            values = {CPU: 100 * busy, MEMORY: _resident_megabytes()}
            if self.device.type == "cuda":
                values[GPU_MEMORY] = torch.cuda.memory_allocated(self.device) / 2**20
                try:
                    values[GPU_UTILIZATION] = float(torch.cuda.utilization(self.device))
                except Exception:  # needs NVML (pynvml); without it the tab shows memory only
                    pass
            step = round(self.seconds_before + now - self._started)
            self._samples.append((int(time.time() * 1000), step, values))

    def drain(self) -> list:
        """The samples taken since the last drain, oldest first, after taking one now."""
        self.sample()
        with self._lock:
            samples, self._samples = self._samples, []
        return samples
