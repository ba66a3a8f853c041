"""A single-node SLURM cluster on this machine, for the SLURM workflow test.

munged, slurmctld and slurmd run in the foreground as children of the test, with their
keys, sockets, state and logs in one temporary folder and on free ports, so they neither
need nor touch /etc/munge or the default ports. The configuration itself must be
/etc/slurm/slurm.conf: the executor's job step drops SLURM_CONF from the environment of
the `srun` it runs inside each job, so srun reads only the default file. It is written
there only when no slurm.conf exists (a real cluster's is never replaced) and removed
again by `stop()`.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel", "srun")
SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
CONF = Path("/etc/slurm/slurm.conf")
MARK = "# Written by selfsup's SLURM workflow test (tests/workflow/slurm_cluster.py); deleted after it."

SLURM_CONF = (
    f"{MARK}\n"
    + """\
ClusterName=selfsup-test
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={munge_socket}
SlurmUser=root
# No cgroups: processes are tracked through their parents, and jobs are not bound to cores.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
MailProg=/bin/true
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# No slurmdbd, so no sacct: the executor asks squeue, which sees a finished job for
# MinJobAge seconds.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=300
# Refuse at once a job the node can never run (more CPUs, memory or GPUs than it has)
# instead of leaving it pending forever.
EnforcePartLimits=ALL
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
# OverSubscribe=FORCE:2 lets two jobs share a core: each job spends most of its time
# starting Python and parsing the workflow on one core, so the node runs two at once.
PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:2
"""
)


def _binary(name: str) -> str | None:
    return shutil.which(name) or next(
        (f"{folder}/{name}" for folder in SBIN if os.access(f"{folder}/{name}", os.X_OK)), None
    )


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    missing = [name for name in (*DAEMONS, *CLIENTS) if _binary(name) is None]
    if missing:
        return (
            f"SLURM or munge is not installed (no {', '.join(missing)}): "
            "`apt-get install slurm-wlm munge` as root, as .ci/run does"
        )
    if os.geteuid() != 0:
        return "starting slurmctld, slurmd and munged needs root (.ci/run runs as root in CI)"
    if CONF.exists() and not CONF.read_text().startswith(MARK):
        return f"{CONF} exists (a real cluster's?); the test needs to write its own there and will not replace it"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no 'munge' user (the munge package creates it)"
    return None


def node_resources() -> tuple[int, int]:
    """CPUs and memory (MB) of this machine, as slurmd sees them (`slurmd -C`)."""
    line = subprocess.run([_binary("slurmd"), "-C"], capture_output=True, text=True, check=True).stdout
    cpus = re.search(r"\bCPUs=(\d+)", line)
    memory = re.search(r"\bRealMemory=(\d+)", line)
    if not (cpus and memory):
        raise RuntimeError(f"`slurmd -C` printed no CPUs= or RealMemory=: {line!r}")
    return int(cpus.group(1)), int(memory.group(1))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """munged + slurmctld + slurmd for localhost; `start()`, then `stop()` (always)."""

    def __init__(self):
        self.cpus, self.memory_mb = node_resources()
        self.host = socket.gethostname().split(".")[0]
        # Not under pytest's tmp_path: the munge user must reach its socket, and pytest's
        # folders are private to root.
        self.state = Path(tempfile.mkdtemp(prefix="selfsup-slurm-"))
        self.state.chmod(0o755)
        self.conf = CONF
        self.env = {**os.environ, "SLURM_CONF": str(CONF)}
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, timeout: float = 60) -> Cluster:
        munge = self.state / "munge"
        munge.mkdir(mode=0o755)
        shutil.chown(munge, "munge", "munge")
        key = munge / "munge.key"
        subprocess.run(
            [_binary("mungekey"), "--create", f"--keyfile={key}"],
            user="munge",
            check=True,
            capture_output=True,
        )
        socket_path = munge / "munge.socket"
        self._spawn(
            "munged",
            [
                _binary("munged"),
                "--foreground",
                f"--socket={socket_path}",
                f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--seed-file={munge / 'munged.seed'}",
                f"--log-file={munge / 'munged.log'}",
            ],
            user="munge",
            group="munge",
        )
        self._wait(socket_path.exists, "munged to create its socket", timeout)
        for folder in ("ctld", "spool"):
            (self.state / folder).mkdir()
        self.conf.parent.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            SLURM_CONF.format(
                host=self.host,
                ctld_port=_free_port(),
                slurmd_port=_free_port(),
                munge_socket=socket_path,
                state=self.state,
                cpus=self.cpus,
                memory_mb=self.memory_mb,
            )
        )
        self._spawn("slurmctld", [_binary("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", [_binary("slurmd"), "-D", "-f", str(self.conf)])
        self._wait(lambda: self.node_state() == "idle", "the node to be idle in sinfo", timeout)
        return self

    def node_state(self) -> str:
        result = subprocess.run(
            ["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, env=self.env
        )
        return result.stdout.strip()

    def logs(self, lines: int = 30) -> str:
        """The last lines of every daemon's log, for failure messages."""
        parts = []
        for name in ("munged.out", "slurmctld.out", "slurmctld.log", "slurmd.out", "slurmd.log"):
            path = self.state / name
            if path.exists() and path.stat().st_size:
                parts.append(
                    f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
                )
        for name, process in self.processes.items():
            if process.poll() is not None:
                parts.append(f"--- {name} exited with {process.returncode}")
        return "\n".join(parts)

    def stop(self) -> None:
        """Cancel every job, stop the daemons (newest first), delete the state folder and the configuration."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            subprocess.run(
                ["scancel", "--full", "--user", "root"], capture_output=True, env=self.env, timeout=30
            )
        for process in reversed(self.processes.values()):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        shutil.rmtree(self.state, ignore_errors=True)
        if CONF.exists() and CONF.read_text().startswith(MARK):
            CONF.unlink()

    def _spawn(self, name: str, command: list[str], **kwargs) -> None:
        # Output to a file, not a pipe nobody reads (a full pipe would block the daemon).
        with open(self.state / f"{name}.out", "wb") as output:
            self.processes[name] = subprocess.Popen(
                command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs
            )

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [name for name, process in self.processes.items() if process.poll() is not None]
            if dead or time.monotonic() > deadline:
                problem = f"{', '.join(dead)} exited" if dead else f"timed out after {timeout} s"
                raise RuntimeError(f"{problem} while waiting for {what}\n{self.logs()}")
            time.sleep(0.5)
