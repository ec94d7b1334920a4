"""Network guard for the Python processes of SLURM jobs in tests/test_slurm.py (on their PYTHONPATH).

Active only inside a SLURM job (SLURM_JOB_ID set) and when PERMERGE_NET_GUARD_DIR names a folder: records
that it was active (job id, pid, command line, HF_HUB_OFFLINE / HF_DATASETS_OFFLINE) in that folder, at
start and again at exit (a job's snakemake process sets the HF variables while it reads the Snakefile), and
refuses every connection to anything but loopback or a unix socket, recording the attempt. The test reads
the records: every compute job's Python processes guarded, no attempt.
"""

import os

_DIR = os.environ.get("PERMERGE_NET_GUARD_DIR")
if _DIR and os.environ.get("SLURM_JOB_ID"):
    import ipaddress
    import json
    import socket
    import traceback

    _JOB = os.environ["SLURM_JOB_ID"]

    def _record(kind: str, name: str | None = None, **extra) -> None:
        try:
            with open("/proc/self/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = "?"
        rec = {
            "job": _JOB,
            "pid": os.getpid(),
            "cmd": cmd[:500],
            "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE"),
            "HF_DATASETS_OFFLINE": os.environ.get("HF_DATASETS_OFFLINE"),
            **extra,
        }
        path = os.path.join(_DIR, f"{kind}-{_JOB}-{os.getpid()}-{name or id(extra)}.json")
        with open(path, "w") as f:
            json.dump(rec, f)

    def _allowed(sock, address) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True  # unix sockets (munge, slurmd) and the like
        host = address[0] if isinstance(address, tuple) else address
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False  # a host name: would resolve to the outside

    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex

    def connect(self, address):
        if not _allowed(self, address):
            _record("attempt", address=repr(address), stack="".join(traceback.format_stack(limit=12)))
            raise ConnectionRefusedError(f"network guard (tests/test_slurm.py): no connection to {address!r}")
        return _connect(self, address)

    def connect_ex(self, address):
        if not _allowed(self, address):
            _record("attempt", address=repr(address), stack="".join(traceback.format_stack(limit=12)))
            return 111  # ECONNREFUSED
        return _connect_ex(self, address)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    import atexit

    _record("guard", name="start", phase="start")
    atexit.register(_record, "guard", name="start", phase="exit")  # replaces the start record
