"""Warm script jobs (permerge.tooling.warm): a script forked from the warm server ends as `python FILE` would.

The server here preloads only `json` (fast); one Snakemake test uses the real preload list through
`install()`, and every workflow test (the smoke run included) runs its jobs this way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from permerge.tooling import warm
from tests.workflow_utils import ROOT

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="fork server and PR_SET_PDEATHSIG: Linux")


@pytest.fixture(scope="module")
def srv():
    server = warm.Server(preload=("json",))
    yield server
    server.close()
    assert server.proc.returncode == 0
    assert not Path(server.dir).exists()


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "job.py"
    path.write_text(textwrap.dedent(body))
    return path


def test_runs_in_the_jobs_directory_and_environment(srv, tmp_path):
    out = tmp_path / "out.json"
    script = _script(
        tmp_path,
        f"""
        import os, sys
        preloaded = "json" in sys.modules  # before this script imports anything
        import json
        json.dump({{"argv0": sys.argv[0], "cwd": os.getcwd(), "var": os.environ.get("PERMERGE_TEST_VAR"),
                    "preloaded": preloaded, "name": __name__, "ppid": os.getppid()}}, open({str(out)!r}, "w"))
        """,
    )
    env = dict(os.environ, PERMERGE_TEST_VAR="from the job")
    warm.run_script(str(script), env=env, cwd=str(tmp_path), srv=srv)
    got = json.loads(out.read_text())  # written without close(): flushed when the job's globals go
    assert got == {
        "argv0": str(script),
        "cwd": str(tmp_path),
        "var": "from the job",
        "preloaded": True,
        "name": "__main__",
        "ppid": srv.proc.pid,
    }


@pytest.mark.parametrize(
    "body, code, stderr",
    [
        ("raise SystemExit('finetune: params.hparams lacks lr')", 1, "finetune: params.hparams lacks lr"),
        ("raise SystemExit(3)", 3, ""),
        ("raise ValueError('bad input in results/x.tsv')", 1, "ValueError: bad input in results/x.tsv"),
        ("import sys; sys.exit(0)", 0, ""),
    ],
)
def test_exit_status_as_python_would(srv, tmp_path, capfd, body, code, stderr):
    script = _script(tmp_path, body)
    if code == 0:
        warm.run_script(str(script), srv=srv)
    else:
        with pytest.raises(subprocess.CalledProcessError) as err:
            warm.run_script(str(script), srv=srv)
        assert err.value.returncode == code
    assert stderr in capfd.readouterr().err


def test_subprocesses_are_waited_for(srv, tmp_path):
    """The server ignores SIGCHLD (no zombies); a job must get it back or subprocess.run fails (ECHILD)."""
    script = _script(
        tmp_path,
        """
        import subprocess, sys
        assert subprocess.run(["sh", "-c", "exit 7"]).returncode == 7
        assert subprocess.run([sys.executable, "-c", "print(1)"], capture_output=True).stdout == b"1\\n"
        """,
    )
    warm.run_script(str(script), srv=srv)


def test_a_killed_job_fails(srv, tmp_path):
    script = _script(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    with pytest.raises(subprocess.CalledProcessError) as err:
        warm.run_script(str(script), srv=srv)
    assert err.value.returncode == -1
    assert "without an exit status" in err.value.stderr


def test_jobs_run_side_by_side(srv, tmp_path):
    """Two jobs at once (two Snakemake threads): each waits for its own child."""
    import threading

    slow = _script(tmp_path, "import time\ntime.sleep(1.0)\n")
    fast = tmp_path / "fast.py"
    fast.write_text("raise SystemExit(5)\n")
    results = {}

    def run(name, path):
        try:
            warm.run_script(str(path), srv=srv)
            results[name] = 0
        except subprocess.CalledProcessError as err:
            results[name] = err.returncode

    threads = [threading.Thread(target=run, args=(n, p)) for n, p in (("slow", slow), ("fast", fast))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == {"slow": 0, "fast": 5}


def test_snakemake_script_jobs_go_through_the_server(tmp_path):
    """install() in a Snakefile: a `script:` job starts with torch imported (the real preload list), its
    benchmark has the child's wall time, a failing job fails the run with its message, and the server ends
    with Snakemake."""
    (tmp_path / "job.py").write_text(
        textwrap.dedent(
            """
            import json, os, sys, time
            preloaded = "torch" in sys.modules
            time.sleep(0.5)
            if snakemake.wildcards.name == "bad":
                raise SystemExit("job.py: refusing input " + snakemake.input[0])
            json.dump({"torch": preloaded, "threads_env": os.environ["OMP_NUM_THREADS"]},
                      open(snakemake.output[0], "w"))
            """
        )
    )
    (tmp_path / "in.txt").write_text("x\n")
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(ROOT / "workflow")!r})
            from permerge.tooling import warm
            warm.install()

            rule run:
                input: "in.txt"
                output: "{{name}}.json"
                benchmark: "{{name}}.bench.tsv"
                threads: 2
                script: "job.py"
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "workflow"))
    cmd = [sys.executable, "-m", "snakemake", "-j", "2"]
    ok = subprocess.run([*cmd, "good.json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-3000:]
    assert json.loads((tmp_path / "good.json").read_text()) == {"torch": True, "threads_env": "2"}
    bench = (tmp_path / "good.bench.tsv").read_text().splitlines()
    seconds = float(bench[1].split("\t")[0])
    assert 0.5 <= seconds < 60, bench
    bad = subprocess.run([*cmd, "bad.json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0
    assert "job.py: refusing input in.txt" in bad.stdout + bad.stderr
    assert not (tmp_path / "bad.json").exists()
    leftover = subprocess.run(["pgrep", "-f", "permerge.tooling.warm .*permerge-warm-"], capture_output=True, text=True)
    mine = [
        p
        for p in leftover.stdout.split()
        if Path(f"/proc/{p}/cwd").exists() and os.readlink(f"/proc/{p}/cwd") == str(tmp_path)
    ]
    assert mine == [], "the warm server outlived snakemake"


def test_benchmark_of_a_job_that_ends_at_once(srv, tmp_path):
    """The benchmark must find the child even when the job has nothing to do (it waits for the go)."""
    from snakemake.benchmark import BenchmarkRecord

    script = _script(tmp_path, "pass\n")
    for _ in range(5):
        record = BenchmarkRecord()
        warm.run_script(str(script), srv=srv, bench_record=record)
        assert record.running_time is not None and record.running_time >= 0


def test_ctrl_c_interrupts_the_job_not_the_server(srv, tmp_path):
    """SIGINT to the job (as Ctrl-C sends it to the whole process group): the job fails with
    KeyboardInterrupt's status, the server goes on serving."""
    script = _script(tmp_path, "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)\n")
    with pytest.raises(subprocess.CalledProcessError) as err:
        warm.run_script(str(script), srv=srv)
    assert err.value.returncode == 130
    srv.proc.send_signal(2)
    warm.run_script(str(_script(tmp_path, "pass\n")), srv=srv)
    assert srv.proc.poll() is None


@pytest.fixture
def script_class(monkeypatch):
    """Snakemake's PythonScript, its execute_script restored after the test whatever install() does."""
    from snakemake.script import PythonScript

    monkeypatch.setattr(PythonScript, "execute_script", PythonScript.execute_script)
    return PythonScript


def test_installs_on_the_release_it_was_written_for(script_class):
    import snakemake

    assert snakemake.__version__ == warm.WRITTEN_FOR  # the pin in pyproject.toml
    assert warm.install() is True
    assert script_class.execute_script.permerge_warm
    assert warm.install() is True  # idempotent: wraps once
    assert not getattr(script_class.execute_script.cold, "permerge_warm", False)


@pytest.mark.parametrize(
    "break_it, reason",
    [
        (lambda mp, cls, sm: mp.setattr(sm, "__version__", "10.0.0"), "written for snakemake 9.27.1, this is 10.0.0"),
        (lambda mp, cls, sm: mp.delattr(cls, "execute_script"), "PythonScript has no execute_script"),
        (
            lambda mp, cls, sm: mp.setattr(cls, "execute_script", lambda self, fname, edit=False, notebook=None: 0),
            "takes (self, fname, edit, notebook), not (self, fname, edit)",
        ),
    ],
    ids=["version", "method gone", "signature"],
)
def test_another_snakemake_keeps_plain_script_jobs(script_class, monkeypatch, capsys, break_it, reason):
    import snakemake

    break_it(monkeypatch, script_class, snakemake)
    before = getattr(script_class, "execute_script", None)
    assert warm.install() is False
    assert getattr(script_class, "execute_script", None) is before
    err = capsys.readouterr().err
    assert reason in err
    assert "script jobs run as plain python processes" in err


def test_another_snakemake_runs_the_workflow_without_the_server(tmp_path):
    """End to end: with Snakemake's version changed before install(), a `script:` job runs in a fresh python
    (torch not imported at its start), the run succeeds and its log says why."""
    (tmp_path / "job.py").write_text(
        'import json, sys\njson.dump({"torch": "torch" in sys.modules}, open(snakemake.output[0], "w"))\n'
    )
    (tmp_path / "Snakefile").write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(ROOT / "workflow")!r})
            import snakemake
            snakemake.__version__ = "10.0.0"
            from permerge.tooling import warm
            assert warm.install() is False

            rule run:
                output: "out.json"
                script: "job.py"
            """
        )
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "workflow"))
    cmd = [sys.executable, "-m", "snakemake", "-j", "1", "out.json"]
    run = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((tmp_path / "out.json").read_text()) == {"torch": False}
    assert "written for snakemake 9.27.1, this is 10.0.0; script jobs run as plain python processes" in run.stderr
