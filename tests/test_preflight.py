"""The CUDA preflight (permerge.tooling.device): every GPU job checks that CUDA works before it reads any input, on a
SLURM node too (where the Snakefile's onstart does not run), and fails with a report naming the host, torch's
CUDA build, the driver, CUDA_VISIBLE_DEVICES and the SLURM job.

The unit tests simulate the GPU cases by patching torch.cuda; the job tests run a real finetune job with
`device: cuda` on this machine the way a SLURM job step runs it (`--mode remote --no-hooks --target-jobs`,
no onstart), which must fail at once with the report in its log.
"""

from __future__ import annotations

import ast
import logging
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from permerge.tooling import device as dev
from tests.workflow_utils import ROOT, copy_workflow, snakemake

REAL_CUDA = torch.cuda.is_available()  # before any test patches it
SLURM_ENV = {
    "SLURM_JOB_ID": "4711",
    "SLURM_JOB_PARTITION": "gpu-a100",
    "SLURM_JOB_GPUS": "3",
    "SLURM_GPUS_ON_NODE": "1",
    "CUDA_VISIBLE_DEVICES": "3",
}


@pytest.fixture
def node(monkeypatch, tmp_path):
    """A host named gpu-node-07 inside a SLURM job, with no nvidia-smi unless a test puts one there."""
    monkeypatch.setattr(dev.socket, "gethostname", lambda: "gpu-node-07")
    for k in ("SLURM_JOB_ID", "SLURM_JOB_PARTITION", "SLURM_JOB_NODELIST", "SLURM_JOB_GPUS", "SLURM_GPUS_ON_NODE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in SLURM_ENV.items():
        monkeypatch.setenv(k, v)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", str(bindir))  # no nvidia-smi on PATH
    monkeypatch.delattr(torch._C, "_cuda_getDriverVersion", raising=False)
    return bindir


def fake_nvidia_smi(bindir: Path, driver: str) -> None:
    smi = bindir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\n[ "$1" = --query-gpu=driver_version ] && echo {driver} && exit 0\nexit 9\n')
    smi.chmod(0o755)


def test_cpu_is_a_noop_and_imports_no_torch():
    code = "import sys; from permerge.tooling import device; assert device.preflight('cpu') is None; print('torch' in sys.modules)"
    env = {"PYTHONPATH": str(ROOT / "workflow"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False", out.stdout + out.stderr


def test_no_gpu_visible(node, monkeypatch, caplog):
    monkeypatch.setattr(torch.version, "cuda", "12.1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "init", lambda: (_ for _ in ()).throw(RuntimeError("No CUDA GPUs are available")))
    log = logging.getLogger("test.preflight")
    with caplog.at_level(logging.ERROR), pytest.raises(dev.DeviceError) as err:
        dev.preflight("cuda", log)
    msg = str(err.value)
    assert msg.startswith("CUDA preflight failed on gpu-node-07: device: 'cuda' but torch sees no CUDA device"), msg
    assert "No CUDA GPUs are available" in msg
    assert f"torch: {torch.__version__}, CUDA build: 12.1" in msg
    assert f"NVIDIA driver: {dev.NO_DRIVER}" in msg and "nvidia-smi missing" in msg
    assert "CUDA_VISIBLE_DEVICES: '3'" in msg
    for k in ("SLURM_JOB_ID='4711'", "SLURM_JOB_PARTITION='gpu-a100'", "SLURM_JOB_GPUS='3'", "SLURM_GPUS_ON_NODE='1'"):
        assert k in msg, msg
    assert msg in caplog.text  # logged before raising: the rule's log has it


def test_driver_too_old(node, monkeypatch):
    """torch built for CUDA 12.4 on a node whose driver supports 11.4: is_available() only warns; the report
    carries torch.cuda.init's reason and both sides' versions."""
    fake_nvidia_smi(node, "470.82.01")
    monkeypatch.setattr(torch._C, "_cuda_getDriverVersion", lambda: 11040, raising=False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    too_old = RuntimeError(
        "The NVIDIA driver on your system is too old (found version 11040). Please update your GPU driver"
    )
    monkeypatch.setattr(torch.cuda, "init", lambda: (_ for _ in ()).throw(too_old))
    with pytest.raises(dev.DeviceError) as err:
        dev.preflight("cuda:0")
    msg = str(err.value)
    assert "host: gpu-node-07" in msg and "CUDA preflight failed on gpu-node-07" in msg
    assert "The NVIDIA driver on your system is too old (found version 11040)" in msg
    assert "CUDA build: 12.4" in msg
    assert "NVIDIA driver: driver 470.82.01 (nvidia-smi); supports CUDA 11.4" in msg
    assert "driver supports torch's CUDA 12.4" in msg  # the hint


def test_init_raises(node, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: (_ for _ in ()).throw(RuntimeError("CUDA unknown error")))
    with pytest.raises(dev.DeviceError, match=r"CUDA fails to initialise: CUDA unknown error"):
        dev.preflight("cuda")


def test_missing_index_and_failing_matmul(node, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(dev.DeviceError, match=r"device: 'cuda:1' but only 1 CUDA device\(s\) are visible"):
        dev.preflight("cuda:1")
    if REAL_CUDA:
        return
    # this machine's torch cannot allocate on cuda:0 (a CPU build, or no GPU): the tiny allocation fails, and says so
    with pytest.raises(dev.DeviceError, match=r"a tiny allocation and matmul on cuda:0 failed: \w"):
        dev.preflight("cuda")


def test_success_logs_what_it_found(node, monkeypatch, caplog):
    fake_nvidia_smi(node, "550.54.14")
    monkeypatch.setattr(torch._C, "_cuda_getDriverVersion", lambda: 12040, raising=False)
    monkeypatch.setattr(torch.version, "cuda", "12.1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    ran = []
    monkeypatch.setattr(dev, "exercise", lambda t, i: ran.append(i))
    props = SimpleNamespace(name="NVIDIA A100-SXM4-80GB", total_memory=80 * 2**30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i: (79 * 2**30, 80 * 2**30))
    with caplog.at_level(logging.INFO):
        line = dev.preflight("cuda", logging.getLogger("test.preflight"))
    assert ran == [0]
    assert line in caplog.text and "\n" not in line
    assert "gpu-node-07" in line and "NVIDIA A100-SXM4-80GB" in line and "80.0 GiB (79.0 GiB free)" in line
    assert (
        f"torch {torch.__version__} (CUDA 12.1)" in line and "driver 550.54.14 (nvidia-smi); supports CUDA 12.4" in line
    )


def test_exercise_computes_on_the_device(monkeypatch):
    """The probe itself (run on the CPU here: torch.device('cuda', i) mapped to the CPU)."""
    real = torch.device
    monkeypatch.setattr(torch, "device", lambda *a: real("cpu"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d: None)
    dev.exercise(torch, 0)


@pytest.mark.skipif(not REAL_CUDA, reason="no GPU here")
def test_real_gpu_passes():
    line = dev.preflight("cuda")
    assert line.startswith("CUDA preflight on ") and torch.cuda.get_device_name(0) in line


def test_job_preflight_exits_with_the_report(node, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as err:
        dev.job_preflight("cuda", logging.getLogger("test.preflight"))
    assert str(err.value.code).startswith("CUDA preflight failed on gpu-node-07")
    dev.job_preflight("cpu", None)  # nothing to check


def test_module_entry_point_fails_without_a_gpu():
    if REAL_CUDA:
        pytest.skip("this machine has a GPU")
    env = {"PYTHONPATH": str(ROOT / "workflow"), "PATH": "/usr/bin:/bin", **SLURM_ENV}
    out = subprocess.run(
        [sys.executable, "-m", "permerge.tooling.device", "cuda"], capture_output=True, text=True, env=env
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "CUDA preflight failed on" in out.stderr and "SLURM_JOB_ID='4711'" in out.stderr


# ------------------------------------------------------------------------------------ the GPU jobs' scripts
GPU_RULES = {"collect_statistics", "finetune", "sweep_lambdas", "merge_many"}


def gpu_rules() -> dict[str, str]:
    """rule name -> script, for every rule whose resources ask for `gpu=GPU`."""
    found = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.split(r"\n(?=\s*rule \w+:)", smk.read_text()):
            m = re.match(r"\s*rule (\w+):", block)
            if m and re.search(r"^\s+gpu=GPU,", block, re.M):
                found[m.group(1)] = re.search(r'script:\s*\n\s*"\.\./scripts/(\w+\.py)"', block).group(1)
    return found


def test_every_gpu_rule_is_known():
    assert set(gpu_rules()) == GPU_RULES


@pytest.mark.parametrize("rule", sorted(GPU_RULES))
def test_gpu_script_runs_the_preflight_before_reading_inputs(rule):
    """The script's first statement after setup_job is job_preflight(<params.device>, log); nothing before it
    touches snakemake.input."""
    script = ROOT / "workflow" / "scripts" / gpu_rules()[rule]
    body = ast.parse(script.read_text()).body
    calls = [
        i
        for i, node in enumerate(body)
        if isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and getattr(node.value.func, "id", None) == "job_preflight"
    ]
    assert calls, f"{script.name} does not call job_preflight"
    first = calls[0]
    before = "\n".join(ast.unparse(n) for n in body[:first])
    assert "snakemake.input" not in before and "log = setup_job(snakemake)" in before, before
    assert "device" in ast.unparse(body[first]) and ast.unparse(body[first]).endswith(", log)")


# ------------------------------------------------------------------------------------ a real job, SLURM-like
def test_finetune_job_on_a_node_without_cuda_fails_at_once(tmp_path, monkeypatch):
    """A finetune job with device: cuda, run as a SLURM job step runs it (remote mode, no onstart hooks), on
    this CPU-only machine: it fails before reading its inputs (dummies here), with the report in its log."""
    if REAL_CUDA:
        pytest.skip("this machine has a GPU: the failure path cannot be exercised here")
    for k, v in SLURM_ENV.items():  # as srun sets them on the node
        monkeypatch.setenv(k, v)
    wd = copy_workflow(tmp_path / "wf")
    (wd / "cuda.yaml").write_text(yaml.safe_dump({"device": "cuda"}))
    results = wd / "results"
    (results / "models" / "mlm" / "seed1").mkdir(parents=True)
    (results / "models" / "mlm" / "seed1" / "config.json").write_text("not a model: never read")
    for split in ("train", "validation"):
        path = results / "data" / "glue" / "sst2" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("not json: never read\n")
    out = snakemake(
        wd,
        *("--configfile", "configs/smoke.yaml", "cuda.yaml"),
        *("--mode", "remote", "--no-hooks", "--nolock", "--force", "--cores", "1"),
        *("--target-jobs", "finetune:glue_task=sst2,seed=1", "--allowed-rules", "finetune"),
        check=False,
        timeout=300,
    )
    text = out.stdout + out.stderr
    assert out.returncode != 0, text[-3000:]
    log = (results / "logs" / "finetune" / "sst2" / "seed1.log").read_text()
    assert "CUDA preflight failed on" in log and "device: 'cuda' but torch sees no CUDA device" in log, log
    assert f"torch: {torch.__version__}, CUDA build: none" in log and "NVIDIA driver:" in log, log
    assert "CUDA_VISIBLE_DEVICES: '3'" in log and "SLURM_JOB_ID='4711'" in log and "SLURM_JOB_GPUS='3'" in log, log
    assert "CUDA preflight failed on" in text  # and on the job's stderr: the SLURM job's log
    assert "JSONDecodeError" not in text and "Traceback" not in log  # no input was read
    assert not (results / "models" / "sst2" / "seed1").exists()
    assert not (results / "config.effective.yaml").exists()  # no onstart: the job's own check failed it
