"""CUDA preflight: does `device: cuda` work on this machine, now?

Every GPU job's script calls `job_preflight` at its top, before it reads any input, locally or on a SLURM
node (where the Snakefile's `onstart` does not run). A torch build that the node's driver cannot run, a node
without a visible GPU, or a device index that does not exist then fails the job at once with one message
naming the host, torch's version and CUDA build, what the driver offers, CUDA_VISIBLE_DEVICES and the SLURM
job, instead of deep inside the first model load. When CUDA works, one log line says what was found.

`device: cpu` is a no-op: torch is not imported here (a light job stays light). `python -m permerge.tooling.device
DEVICE` runs the same check in a process of its own (config.check_device does, at the start of a local run,
so the Snakemake process itself never holds a CUDA context).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

SLURM_VARS = ("SLURM_JOB_ID", "SLURM_JOB_PARTITION", "SLURM_JOB_NODELIST", "SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE")
NO_DRIVER = "no NVIDIA driver found (nvidia-smi missing)"


class DeviceError(RuntimeError):
    """The configured CUDA device does not work here; the message says where and with what."""


def is_cuda(device) -> bool:
    return str(device).startswith("cuda")


def device_index(device) -> int:
    """cuda -> 0, cuda:1 -> 1."""
    device = str(device)
    return int(device.split(":", 1)[1]) if ":" in device else 0


def _cuda_version(code: int) -> str:
    """cudaDriverGetVersion's integer (12040) as a version (12.4)."""
    return f"{code // 1000}.{code % 1000 // 10}"


def driver_info(torch=None) -> str:
    """What the NVIDIA driver offers: its version (nvidia-smi) and the newest CUDA it supports (from torch's
    CUDA runtime, in a CUDA build of torch); NO_DRIVER when neither can tell."""
    parts = []
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True, timeout=30
            )
            versions = sorted({v.strip() for v in out.stdout.splitlines() if v.strip()})
            if out.returncode == 0 and versions:
                parts.append(f"driver {', '.join(versions)} (nvidia-smi)")
            else:
                why = (out.stderr or out.stdout).strip().splitlines()
                parts.append(f"nvidia-smi failed (exit {out.returncode}: {why[0] if why else 'no output'})")
        except (OSError, subprocess.SubprocessError) as err:
            parts.append(f"nvidia-smi failed ({err})")
    get = getattr(getattr(torch, "_C", None), "_cuda_getDriverVersion", None)
    if get is not None:
        try:
            code = int(get())
            parts.append(f"supports CUDA {_cuda_version(code)}" if code else "torch finds no CUDA driver")
        except Exception as err:  # noqa: BLE001 - reported, not raised: this is the diagnosis
            parts.append(f"torch cannot query the driver ({err})")
    return "; ".join(parts) if parts else NO_DRIVER


def _env(name: str) -> str:
    value = os.environ.get(name)
    return "<unset>" if value is None else repr(value)


def describe(device, torch) -> list[str]:
    """The facts a failure report needs, one per line."""
    build = torch.version.cuda
    lines = [
        f"  device (config): {device!r}",
        f"  host: {socket.gethostname()}",
        f"  torch: {torch.__version__}, CUDA build: {build or 'none (a CPU-only build of torch)'}",
        f"  NVIDIA driver: {driver_info(torch)}",
        f"  CUDA_VISIBLE_DEVICES: {_env('CUDA_VISIBLE_DEVICES')}",
    ]
    if "SLURM_JOB_ID" in os.environ:
        lines.append("  SLURM: " + ", ".join(f"{v}={_env(v)}" for v in SLURM_VARS))
    return lines


def _hint(torch) -> str:
    if not torch.version.cuda:
        return (
            "torch here is a CPU-only build: install a CUDA build of the pinned torch whose CUDA version the "
            "driver supports (docs/cluster.md, 'Installing on a cluster'), or set device: cpu"
        )
    return (
        "check that the job got a GPU (SLURM: the rule's gpu resource, --gpus) and that the driver supports "
        f"torch's CUDA {torch.version.cuda} (else install a torch build for an older CUDA: docs/cluster.md)"
    )


def exercise(torch, index: int) -> None:
    """A tiny allocation and a matmul on the device, waited for (a broken runtime fails here)."""
    dev = torch.device("cuda", index)
    x = torch.arange(16, dtype=torch.float32, device=dev).reshape(4, 4)
    y = (x @ x).sum().item()
    torch.cuda.synchronize(dev)
    if abs(y - 3920.0) > 1e-3:
        raise RuntimeError(f"a 4x4 matmul on {dev} gave {y}, expected 3920")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _fail(device, torch, headline: str, log=None):
    msg = "\n".join([f"CUDA preflight failed on {socket.gethostname()}: {headline}", *describe(device, torch)])
    msg += "\n  fix: " + _hint(torch)
    if log is not None:
        log.error("%s", msg)
    raise DeviceError(msg)


def preflight(device, log=None) -> str | None:
    """Check that `device` works (no-op for a CPU device); raise DeviceError saying why not (logged to `log`
    first), else log and return one line with the device's name, memory and torch's versions."""
    if not is_cuda(device):
        return None
    import torch

    index = device_index(device)
    try:
        available = torch.cuda.is_available()
    except Exception as err:  # noqa: BLE001
        _fail(device, torch, f"device: {device!r} but CUDA fails to initialise: {_first_line(err)}", log)
    if not available:
        why = ""
        try:  # the reason is_available() only warns about: no driver, a driver too old for this build, ...
            torch.cuda.init()
        except Exception as err:  # noqa: BLE001
            why = f" (torch.cuda.init: {_first_line(err)})"
        _fail(device, torch, f"device: {device!r} but torch sees no CUDA device{why}", log)
    count = torch.cuda.device_count()
    if index >= count:
        _fail(device, torch, f"device: {device!r} but only {count} CUDA device(s) are visible", log)
    try:
        exercise(torch, index)
    except Exception as err:  # noqa: BLE001
        _fail(
            device,
            torch,
            f"device: {device!r}: a tiny allocation and matmul on cuda:{index} failed: {_first_line(err)}",
            log,
        )
    props = torch.cuda.get_device_properties(index)
    memory = f"{props.total_memory / 2**30:.1f} GiB"
    try:
        free, _ = torch.cuda.mem_get_info(index)
        memory += f" ({free / 2**30:.1f} GiB free)"
    except Exception:  # noqa: BLE001 - the free memory is a courtesy
        pass
    line = (
        f"CUDA preflight on {socket.gethostname()}: {device} = cuda:{index} {props.name}, {memory}; "
        f"torch {torch.__version__} (CUDA {torch.version.cuda}); {driver_info(torch)}; "
        f"CUDA_VISIBLE_DEVICES={_env('CUDA_VISIBLE_DEVICES')}"
    )
    if log is not None:
        log.info("%s", line)
    return line


def job_preflight(device, log) -> None:
    """`preflight` for a job's script: a failure ends the job with the message (logged, and on stderr, which is
    the SLURM job's log) and exit status 1, without a traceback."""
    try:
        preflight(device, log)
    except DeviceError as err:
        raise SystemExit(str(err)) from None


def main(argv=None) -> None:
    """python -m permerge.tooling.device DEVICE: exit 0 and print the found line, or exit 1 with the report."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        raise SystemExit("usage: python -m permerge.tooling.device DEVICE (cpu, cuda, cuda:N)")
    try:
        line = preflight(argv[0])
    except DeviceError as err:
        raise SystemExit(str(err)) from None
    print(line or f"{argv[0]}: nothing to check")


if __name__ == "__main__":
    main()
