"""Warm script jobs: each rule's Python script runs in a process forked from one interpreter that has
already imported torch, transformers and this library, instead of in a fresh `python`.

Why: a fresh interpreter spends about 7 s importing torch (2 s) and transformers' BERT classes (4-5 s)
before a job does any work, and the embedded grid runs some 115 such jobs on 2 cores
(docs/performance.md). A forked child starts with those modules already imported.

How: `install()` (called by common.smk for local runs with `warm_jobs: true`) replaces Snakemake's
`PythonScript.execute_script` (snakemake 9.27.1, pinned in pyproject.toml), which runs
`python <generated file>`. The same generated file (Snakemake's preamble, then the script) is instead
sent to a server, `python -m permerge.tooling.warm SOCKET`, that the first job starts and that ends with the
Snakemake process. The server forks one child per job. The child takes the job's working directory,
environment (with the thread variables Snakemake sets for a job), standard output and error, runs the
file as `__main__` and ends as `python FILE` would: exit status 0, the `SystemExit` code, or 1 after an
exception (traceback on stderr). The job's benchmark samples the child. Jobs with a conda environment, a
container or environment modules, and notebook edits, run as before.

Fail safe: the replaced method is private, so `install()` replaces it only on the Snakemake release it was
written for (`WRITTEN_FOR`) and only while the method has the signature it expects; otherwise it logs one
line saying why and leaves Snakemake's own script jobs (fresh `python` processes) in place.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import inspect
import json
import os
import runpy
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback

# What the server imports once. A module missing here is imported by the job itself, as before.
PRELOAD = (
    "numpy",
    "scipy.optimize",
    "scipy.stats",
    "torch",
    "safetensors.torch",
    "tokenizers",
    "transformers",
    "transformers.models.bert.modeling_bert",
    "transformers.models.auto.modeling_auto",
    "transformers.models.auto.tokenization_auto",
    "snakemake.iocontainers",
    "snakemake.logging",
    "permerge.checkpoints",
    "permerge.evaluation.evaluate",
    "permerge.training.finetune",
    "permerge.alignment.matching",
    "permerge.models",
    "permerge.merging.permute",
    "permerge.training.pretrain",
    "permerge.alignment.stats",
    "permerge.alignment.weight_matching",
)

_PID = struct.Struct("!q")
_CODE = struct.Struct("!i")


# ------------------------------------------------------------------------------------------ the server
def serve(path: str, preload=PRELOAD) -> None:
    """Listen on the Unix socket `path`, import `preload`, then fork one child per connection until
    standard input closes (the Snakemake process that started this one is gone)."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    # Ctrl-C is for the jobs and Snakemake (one process group); the server ends when Snakemake does.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(128)  # jobs may connect while the imports below run
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - the job imports it itself, and fails there by name
            print(f"permerge.tooling.warm: not preloaded: {name}: {err}", file=sys.stderr)
    if threading.active_count() > 1:
        print("permerge.tooling.warm: the preloaded modules started threads; forking anyway", file=sys.stderr)
    gc.collect()
    gc.freeze()  # the children share these objects' pages instead of copying them at their first collection
    while True:
        ready, _, _ = select.select([listener, sys.stdin], [], [])
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
            break
        if listener in ready:
            conn, _ = listener.accept()
            if os.fork() == 0:
                listener.close()
                _child(conn)  # never returns
            conn.close()
    listener.close()


def _die_with_parent() -> None:
    """SIGTERM to this child when the server ends (Linux; elsewhere nothing)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _child(conn: socket.socket) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the job's own subprocesses are waited for
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C interrupts the job
        _die_with_parent()
        conn.sendall(_PID.pack(os.getpid()))
        _, fds, _, _ = socket.recv_fds(conn, 1, 2)  # the job's stdout and stderr: the client's, as with a subprocess
        for target, fd in zip((1, 2), fds):
            os.dup2(fd, target)
            os.close(fd)
        (size,) = _CODE.unpack(_recv_exact(conn, _CODE.size))
        request = json.loads(_recv_exact(conn, size).decode())
        if _recv_exact(conn, 1) != b"!":  # the client's benchmark has found this process: start
            raise RuntimeError("permerge.tooling.warm: the client left before the job started")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        code = run_file(request["script"])
    except BaseException:  # noqa: BLE001 - reported as the job's failure
        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(Exception):
            conn.sendall(_CODE.pack(code))
        os._exit(code)


def _exit_code(code) -> int:
    """The status `python FILE` exits with for `SystemExit(code)`."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def run_file(path: str) -> int:
    """Run the Python file as `__main__` and finish as the interpreter would; returns the exit status."""
    sys.argv = [path]
    try:
        runpy.run_path(path, run_name="__main__")
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except BaseException:  # noqa: BLE001 - as python prints an uncaught exception
        traceback.print_exc()
        code = 1
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()  # logging.shutdown and the job's own handlers, as at interpreter exit
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    return code


# ------------------------------------------------------------------------------------------ the client
class Server:
    """One server process per Snakemake process, started at the first job."""

    def __init__(self, preload=PRELOAD):
        self.dir = tempfile.mkdtemp(prefix="permerge-warm-")
        self.path = os.path.join(self.dir, "socket")
        args = [sys.executable, "-m", "permerge.tooling.warm", self.path]
        if tuple(preload) != PRELOAD:
            args += ["--preload", ",".join(preload)]
        # huggingface_hub reads this when imported, i.e. in the server, not in each job (setup_job sets it there)
        env = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", **os.environ}
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, env=env)
        atexit.register(self.close)

    def connect(self, timeout: float = 300.0) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"permerge.tooling.warm: the server exited with status {self.proc.returncode}")
            conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                conn.connect(self.path)
                return conn
            except (FileNotFoundError, ConnectionRefusedError) as err:
                conn.close()
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"permerge.tooling.warm: no server on {self.path} after {timeout:.0f} s"
                    ) from err
                time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(Exception):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


_server: Server | None = None
_server_lock = threading.Lock()


def server() -> Server:
    global _server
    with _server_lock:
        if _server is None or _server.proc.poll() is not None:
            _server = Server()
        return _server


def run_script(
    path: str,
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    bench_record=None,
    srv: Server | None = None,
) -> None:
    """Run the Python file in a child of the warm server (`srv`, default: this process's) and wait for it.
    Raises CalledProcessError (as Snakemake's shell does) when it fails, or when it ends without reporting
    a status (killed)."""
    request = json.dumps(
        {"script": os.path.abspath(path), "cwd": cwd or os.getcwd(), "env": dict(os.environ if env is None else env)}
    ).encode()
    cmd = f"python {path} (forked from the warm interpreter, permerge.tooling.warm)"
    with (srv or server()).connect() as conn:
        socket.send_fds(conn, [b"."], [1, 2])  # what a subprocess would inherit
        conn.sendall(_CODE.pack(len(request)) + request)
        head = _recv_exact(conn, _PID.size)
        if len(head) < _PID.size:
            raise subprocess.CalledProcessError(1, cmd)
        (pid,) = _PID.unpack(head)
        if bench_record is not None:
            from snakemake.benchmark import benchmarked

            # The child waits for the go: a job that ends at once would otherwise be gone (reaped by the
            # server) before the benchmark looks for its process.
            with benchmarked(pid, bench_record):
                conn.sendall(b"!")
                tail = _recv_exact(conn, _CODE.size)
        else:
            conn.sendall(b"!")
            tail = _recv_exact(conn, _CODE.size)
    if len(tail) < _CODE.size:  # no status: the child was killed (a signal, the out-of-memory killer)
        raise subprocess.CalledProcessError(-1, cmd, stderr=f"process {pid} ended without an exit status")
    (code,) = _CODE.unpack(tail)
    if code:
        raise subprocess.CalledProcessError(code, cmd)


def job_env(threads, resources) -> dict[str, str]:
    """The environment Snakemake's shell gives a job: this one, its thread count, its tmpdir."""
    env = dict(os.environ)
    for var in (
        "OMP_NUM_THREADS",
        "GOTO_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    ):
        env[var] = str(threads)
    tmpdir = resources.get("tmpdir", None) if resources is not None else None
    if tmpdir:
        for var in ("TMPDIR", "TMP", "TEMPDIR", "TEMP"):
            env[var] = str(tmpdir)
    return env


# The Snakemake release whose private `PythonScript.execute_script(self, fname, edit=False)` install()
# replaces (pinned in pyproject.toml). On any other release the job runs as Snakemake runs it.
WRITTEN_FOR = "9.27.1"
_SIGNATURE = ["self", "fname", "edit"]


def unsupported() -> str | None:
    """Why warm jobs cannot be installed on this Snakemake, or None when they can."""
    try:
        import snakemake
        from snakemake.script import PythonScript
    except ImportError as err:
        return f"snakemake.script.PythonScript cannot be imported ({err})"
    version = getattr(snakemake, "__version__", "unknown")
    if version != WRITTEN_FOR:
        return f"written for snakemake {WRITTEN_FOR}, this is {version}"
    method = vars(PythonScript).get("execute_script")  # its own, not an inherited abstract one
    if method is None:
        return "snakemake.script.PythonScript has no execute_script"
    try:
        params = list(inspect.signature(method).parameters)
    except (TypeError, ValueError) as err:
        return f"PythonScript.execute_script has no readable signature ({err})"
    if params != _SIGNATURE:
        return f"PythonScript.execute_script takes ({', '.join(params)}), not ({', '.join(_SIGNATURE)})"
    return None


def _fallback(reason: str) -> None:
    print(f"permerge.tooling.warm: {reason}; script jobs run as plain python processes", file=sys.stderr)


def install() -> bool:
    """Route Snakemake's Python `script:` jobs through the warm server (idempotent). Returns whether they
    are; on a Snakemake it was not written for, logs why and changes nothing."""
    reason = unsupported()
    if reason is not None:
        _fallback(reason)
        return False
    from snakemake.script import PythonScript

    cold = PythonScript.execute_script
    if getattr(cold, "permerge_warm", False):
        return True

    def execute_script(self, fname, edit=False):
        try:
            plain = edit or any(getattr(self, a) is not None for a in ("conda_env", "container_img", "env_modules"))
            env, bench_record = job_env(self.threads, self.resources), self.bench_record
        except AttributeError as err:  # the job lacks what this reads: Snakemake's own way, said once per job
            _fallback(f"PythonScript lacks {err.name or err}")
            plain = True
        if plain:
            return cold(self, fname, edit)
        run_script(fname, env=env, bench_record=bench_record)

    execute_script.permerge_warm = True
    execute_script.cold = cold
    PythonScript.execute_script = execute_script
    return True


def main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="permerge's warm job server (started by the workflow)")
    parser.add_argument("socket")
    parser.add_argument("--preload", help="comma-separated modules (default: permerge.tooling.warm.PRELOAD)")
    args = parser.parse_args(argv)
    serve(args.socket, args.preload.split(",") if args.preload else PRELOAD)


if __name__ == "__main__":
    main()
