"""What every benchmark line records: the machine, the versions and the command."""

from __future__ import annotations

import importlib
import json
import os
import platform
import shlex
import sys
from typing import Any

import jax


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else `platform.processor()`."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def num_cpu_cores() -> int:
    """CPU cores this process may run on (what XLA's CPU thread pool is sized to)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def device_info() -> dict[str, Any]:
    """JAX's first device, the host CPU and its load (other processes slow CPU timings)."""
    device = jax.devices()[0]
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "num_devices": jax.device_count(),
        "cpu": cpu_model(),
        "cpu_cores": num_cpu_cores(),
        "load_average_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def versions(*extra_modules: str) -> dict[str, str]:
    """Python and library versions; `extra_modules` (e.g. 'torch') are added when imported."""
    found = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", *extra_modules):
        module = sys.modules.get(name) or importlib.import_module(name)
        found[name] = getattr(module, "__version__", "unknown")
    return found


def relevant_environment() -> dict[str, str]:
    """Environment variables that change CPU speed (XLA flags, OpenMP and MKL threading)."""
    names = ("XLA_FLAGS", "JAX_PLATFORMS", "OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS")
    return {name: os.environ[name] for name in names if name in os.environ}


def command_line(module: str) -> str:
    """`python -m module args...` as this process was started, quoted for a shell."""
    return shlex.join(["python", "-m", module, *sys.argv[1:]])


def emit(record: dict[str, Any]) -> None:
    """Prints one JSON object on one line and flushes, so partial runs keep their lines."""
    print(json.dumps(record, sort_keys=False), flush=True)


def load_config(spec: str):
    """The config of `FILE[:VARIANT]` (as `--config=` takes it), unlocked for overrides."""
    import importlib.util

    path, _, variant = spec.partition(":")
    module_spec = importlib.util.spec_from_file_location("benchmark_config", path)
    if module_spec is None:
        raise SystemExit(f"--config={spec}: {path} is not a Python config file")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(variant).unlock()
