"""A real one-node SLURM cluster on this machine (Debian ``slurm-wlm``), with fake GPUs, for trials and tests.

Everything lives under one state directory (config, state, spool, logs, pid files, fake GPU devices), so several
clusters can run side by side on different ports. Settings and their reasons: ../shared/notes/slurm.md §2-3.
``auth/none`` means anyone who can reach the ports can act as any user: sandbox and CI only (README).
No accounting (slurmdbd): submitit then cannot see a *cancelled* job's state, so never ``scancel`` a
submitit job on this cluster without also stopping the sweep that waits on it.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_STATE_DIR = Path(os.environ.get("EMBEDGRID_SLURM_DIR", Path.cwd() / ".slurm"))
DAEMONS = ("slurmctld", "slurmd")


class SlurmError(RuntimeError):
    """The local cluster cannot be started, or a SLURM controller cannot be reached."""


def _run(args: list[str], env: dict | None = None, timeout: float = 15.0) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def node_hardware() -> dict:
    """CPU layout and memory as slurmd sees them (``slurmd -C``); a mismatch registers the node INVALID."""
    first = _run(["slurmd", "-C"]).stdout.splitlines()[0]
    fields = dict(item.split("=", 1) for item in first.split())
    fields["RealMemory"] = str(max(1024, int(fields["RealMemory"]) - 2048))
    return fields


@dataclass
class LocalCluster:
    state_dir: Path = DEFAULT_STATE_DIR
    port: int = 6817          # slurmctld; slurmd listens on port + 1
    gpus: int = 2             # fake GPUs (char devices with /dev/null's numbers): gpus_per_node schedules

    def __post_init__(self):
        self.state_dir = Path(self.state_dir).resolve()

    @property
    def conf(self) -> Path:
        return self.state_dir / "etc" / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment for every SLURM client (sbatch, squeue, submitit, pytest): only SLURM_CONF."""
        return {"SLURM_CONF": str(self.conf)}

    def _client_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def write_config(self) -> Path:
        d, host = self.state_dir, socket.gethostname().split(".")[0]
        for sub in ("etc", "state", "spool", "run", "log", "dev"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        hw = node_hardware()
        layout = " ".join(f"{k}={hw[k]}" for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                   "ThreadsPerCore", "RealMemory") if k in hw)
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        self.conf.write_text(f"""\
# Written by `python -m embedgrid.slurm start` (embedgrid/slurm/cluster.py). One node, fake GPUs, auth/none.
ClusterName=embedgrid
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={self.port}
SlurmdPort={self.port + 1}
AuthType=auth/none
CredType=cred/none
AuthInfo=cred_expire=5
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/run/slurmctld.pid
SlurmdPidFile={d}/run/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,bf_interval=1,sched_interval=2,sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
KillWait=5
JobCompType=jobcomp/filetxt
JobCompLoc={d}/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName={host} NodeAddr=127.0.0.1 {layout}{gres} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
""")
        gres_conf = self.conf.parent / "gres.conf"
        if self.gpus:
            for i in range(self.gpus):
                dev = d / "dev" / f"nvidia{i}"
                if not dev.exists():
                    os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))  # char device, /dev/null's numbers
            gres_conf.write_text(f"NodeName={host} Name=gpu File={d}/dev/nvidia[0-{self.gpus - 1}]\n")
        else:
            gres_conf.write_text("")
        return self.conf

    def _pid(self, daemon: str) -> int | None:
        """Pid of a live (not zombie) daemon from its pid file."""
        path = self.state_dir / "run" / f"{daemon}.pid"
        try:
            pid = int(path.read_text().strip())
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (OSError, ValueError):
            return None
        return None if stat.rsplit(")", 1)[1].split()[0] == "Z" else pid

    def running(self) -> bool:
        return all(self._pid(d) for d in DAEMONS)

    def node_state(self) -> str:
        proc = _run(["sinfo", "-h", "-o", "%t"], env=self._client_env(), timeout=10)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def start(self, timeout: float = 60.0) -> dict[str, str]:
        """Start (or take over) slurmctld + slurmd and wait until the node is idle; returns the client env."""
        for binary in (*DAEMONS, "sbatch", "scontrol", "sinfo"):
            if shutil.which(binary) is None:
                raise SlurmError(f"`{binary}` not found: install Debian's slurm-wlm (./setup.sh does it)")
        if os.geteuid() != 0:
            raise SlurmError("the local SLURM cluster runs its daemons as root (SlurmUser=root, fake GPU "
                             "devices via mknod); run as root, e.g. in a container or CI")
        self.write_config()
        for daemon in DAEMONS:
            if self._pid(daemon) is None:
                proc = _run([daemon, "-f", str(self.conf)], env=self._client_env())
                if proc.returncode != 0:
                    raise SlurmError(f"{daemon} failed to start ({proc.returncode}): {proc.stderr.strip()}; "
                                     f"see {self.state_dir / 'log' / (daemon + '.log')}")
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.node_state()
            if state.startswith(("drain", "drng")):  # a node once INVALID stays drained after the fix
                host = socket.gethostname().split(".")[0]
                _run(["scontrol", "update", f"nodename={host}", "state=resume"], env=self._client_env())
            if state in ("idle", "mix", "alloc"):
                return self.env
            time.sleep(0.2)
        raise SlurmError(f"node not idle after {timeout:.0f} s (state {state!r}); see {self.state_dir / 'log'}")

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel every job, then shut both daemons down (``scontrol shutdown`` alone leaves jobs running)."""
        env = self._client_env()
        if self._pid("slurmctld"):
            _run(["scancel", "--full", "--quiet", "--user", str(os.getuid())], env=env)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _run(["squeue", "-h"], env=env).stdout.strip():
                time.sleep(0.5)
            _run(["scontrol", "shutdown"], env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self._pid(d) for d in DAEMONS):
            time.sleep(0.1)
        for daemon in DAEMONS:  # last resort: a daemon that ignored the shutdown
            pid = self._pid(daemon)
            if pid:
                os.kill(pid, signal.SIGKILL)

    def status(self) -> str:
        lines = [f"SLURM_CONF={self.conf}"]
        for daemon in DAEMONS:
            pid = self._pid(daemon)
            lines.append(f"{daemon}: {'running (pid %d)' % pid if pid else 'stopped'}")
        if self.running():
            env = self._client_env()
            lines.append(_run(["sinfo", "-o", "%P %t %D %c %m %G"], env=env).stdout.rstrip())
            lines.append(_run(["squeue"], env=env).stdout.rstrip())
        return "\n".join(lines)


def check_controller(timeout: float = 15.0) -> str:
    """Fail fast (``SlurmError``) unless the controller that SLURM clients are configured for answers."""
    conf = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
    hint = ("start the local cluster with `python -m embedgrid.slurm start` and export the SLURM_CONF it "
            "prints, or point SLURM_CONF at your cluster's slurm.conf")
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        raise SlurmError(f"SLURM client commands (sbatch, scontrol) are not installed; {hint}")
    try:
        proc = _run(["scontrol", "ping"], timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SlurmError(f"SLURM controller did not answer within {timeout:.0f} s (SLURM_CONF={conf}); {hint}") \
            from None
    answer = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or " is UP" not in answer:
        raise SlurmError(f"SLURM controller unreachable (SLURM_CONF={conf}): {answer or 'no answer'}; {hint}")
    return answer
