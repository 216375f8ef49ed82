"""A real one-node SLURM cluster on loopback for the tests and the bench: munged, slurmctld and slurmd of Debian's
`slurm-wlm` (installed by .ci/run), started from a `slurm.conf` written here.

No cgroups (`proctrack/linuxproc`, `task/none`): the tests run in containers where cgroup v1/v2 delegation
is not available. The node has this machine's CPUs (each may be shared by up to four jobs, so that three
one-CPU workers run at once on a 2-core machine) and no GPUs: the workers run the tiny models on CPU.
Every file (keys, sockets, state, logs) lives in one temporary folder, and the ports are picked free, so
two clusters (two engineers' test runs) on one machine do not meet.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
START_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_conf(folder: Path, node: str, cpus: int, ctld_port: int, slurmd_port: int) -> str:
    """The cluster's configuration: one node, one partition `debug`, no accounting, no cgroups."""
    return f"""\
ClusterName=synthset-test
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge.socket,cred_expire=10
StateSaveLocation={folder}/ctld-state
SlurmdSpoolDir={folder}/slurmd-spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
MessageTimeout=20
KillWait=10
MinJobAge=600
InactiveLimit=0
Waittime=0
OverTimeLimit=0
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


@dataclass
class SlurmCluster:
    folder: Path
    conf: Path
    node: str
    processes: list[subprocess.Popen]

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def logs(self) -> str:
        """Every daemon's log, for a failure message."""
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log", "munged.out", "slurmctld.out", "slurmd.out"):
            path = self.folder / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')[-4000:]}")
        return "\n".join(parts)

    def command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, **self.env}
        return subprocess.run(args, env=env, capture_output=True, text=True, check=check, timeout=60)

    def stop(self) -> None:
        """Cancel every job (so no job step outlives the cluster), then stop the daemons."""
        if self.processes and self.processes[-1].poll() is None:
            self.command("scancel", "--full", "--user", str(os.getuid()), check=False)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.command("squeue", "-h", check=False).stdout.strip():
                time.sleep(0.5)
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _start(folder: Path, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    out = open(folder / f"{name}.out", "wb")  # noqa: SIM115 - lives as long as the daemon
    return subprocess.Popen(
        args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True, preexec_fn=_die_with_parent
    )


def _die_with_parent() -> None:
    """In the daemon before exec: SIGTERM when the process that started it dies (a killed test run)."""
    import ctypes
    import signal

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for(check, what: str, cluster: SlurmCluster) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        for process in cluster.processes:
            if process.poll() is not None:
                name = Path(str(process.args[0] if isinstance(process.args, list) else process.args)).name
                raise RuntimeError(f"{name} exited with {process.returncode} before {what}\n{cluster.logs()}")
        if check():
            return
        time.sleep(0.25)
    raise RuntimeError(
        f"the test SLURM cluster did not reach '{what}' in {START_TIMEOUT_SECONDS:.0f} s\n{cluster.logs()}"
    )


def binary(name: str) -> str:
    """A daemon's path: on PATH, or in /usr/sbin (where Debian puts them, not always on a user's PATH)."""
    return shutil.which(name) or f"/usr/sbin/{name}"


def missing_daemons() -> list[str]:
    return [name for name in (*DAEMONS, "sbatch") if not Path(binary(name)).exists()]


def start_cluster(folder: Path) -> SlurmCluster:
    """Start munged, slurmctld and slurmd in the foreground under `folder`; return once the node is idle.

    Raises:
        RuntimeError: a daemon is not installed, exits, or the node does not come up; with every log.
    """
    missing = missing_daemons()
    if missing:
        raise RuntimeError(f"SLURM is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("ctld-state", "slurmd-spool"):
        (folder / sub).mkdir(exist_ok=True)
    node = socket.gethostname().split(".")[0]
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder, node, os.cpu_count() or 1, free_port(), free_port()))
    key = folder / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(folder, conf, node, [])
    munged = [binary("munged"), "--foreground", "--force", f"--socket={folder}/munge.socket", f"--key-file={key}"]
    munged += [f"--pid-file={folder}/munged.pid", f"--log-file={folder}/munged.log", f"--seed-file={folder}/seed"]
    cluster.processes.append(_start(folder, "munged", munged, env))
    _wait_for(lambda: (folder / "munge.socket").exists(), "munged's socket", cluster)
    cluster.processes.append(_start(folder, "slurmctld", [binary("slurmctld"), "-D", "-i", "-f", str(conf)], env))
    _wait_for(lambda: cluster.command("scontrol", "ping", check=False).stdout.count("UP") > 0, "slurmctld up", cluster)
    cluster.processes.append(_start(folder, "slurmd", [binary("slurmd"), "-D", "-N", node, "-f", str(conf)], env))
    _wait_for(lambda: _node_state(cluster) == "idle", "the node idle", cluster)
    return cluster


def _node_state(cluster: SlurmCluster) -> str:
    return cluster.command("sinfo", "-h", "-n", cluster.node, "-o", "%T", check=False).stdout.strip()
