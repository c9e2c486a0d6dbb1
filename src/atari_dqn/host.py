"""The machine a run or a benchmark ran on: what a wall-clock figure depends on besides the
code. This project's CPU machines differ 2.5x in speed (docs/results/README.md), so every bench
result and every training session records it."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from typing import Any

import torch

Host = dict[str, Any]  # JSON-able


def cpu_flags_and_model(cpuinfo: str) -> tuple[set[str], str]:
    """The first processor's flags and model from a Linux ``/proc/cpuinfo`` text; the model is
    its name with x86's family and model numbers (a VM may name every AMD CPU "AMD EPYC")."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's only
    flags = set((fields.get("flags") or fields.get("Features", "")).split())  # x86 / Arm
    model = fields.get("model name", "")
    if "cpu family" in fields:
        model += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return flags, model.strip()


def host_info(cpuinfo_path: str = "/proc/cpuinfo") -> Host:
    """What a wall-clock figure depends on besides the code: the CPU, its cores and whether it
    does bfloat16 in hardware (``--bf16`` is about 1.3-2x faster where it does and about 10x
    slower where torch has to emulate it), and torch's version and kernel ISA. ``bf16_native``
    is None where /proc/cpuinfo cannot be read (not Linux)."""
    try:
        with open(cpuinfo_path) as fh:
            flags, model = cpu_flags_and_model(fh.read())
        bf16: bool | None = bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})
    except OSError:
        model, bf16 = "", None
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "bf16_native": bf16,
        "torch": torch.__version__,
        "torch_cpu_isa": torch.backends.cpu.get_cpu_capability(),
    }


def host_line(host: Host) -> str:
    bf16 = {True: "yes", False: "no", None: "unknown"}[host["bf16_native"]]
    return (
        f"host: {host['cpu']}, {host['cores']} cores, bf16 in hardware: {bf16}; "
        f"torch {host['torch']} ({host['torch_cpu_isa']} kernels)"
    )


def session_record(step: int, device: torch.device) -> Host:
    """A line of a run's sessions.csv: the agent step a process started (or resumed) at, when,
    on which host, with how many torch threads and on which device (a GPU by its name)."""
    name = str(device)
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return {
        "step": step,
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        **host_info(),
        "torch_threads": torch.get_num_threads(),
        "device": name,
    }
