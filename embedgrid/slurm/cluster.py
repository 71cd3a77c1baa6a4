"""A real one-node SLURM cluster on this machine (Debian ``slurm-wlm``), with fake GPUs, for trials and tests.

Everything lives under one state directory (config, state, spool, logs, pid files, munge key and socket, fake GPU
devices), so several clusters can run side by side on different ports. Settings and their reasons: docs/slurm.md.
Reachable from this machine only, in two layers: both daemons bind their ports to 127.0.0.1 (never 0.0.0.0), and
every message is signed by a private munged whose key (mode 600) and socket live in the state directory, so a
client without the key is refused even if it reaches a port. ``start`` checks the bind and refuses otherwise.
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

from embedgrid.errors import SlurmError
from embedgrid.slurm.sockets import Listener, listening_sockets, slurm_processes

DEFAULT_STATE_DIR = Path(os.environ.get("EMBEDGRID_SLURM_DIR", Path.cwd() / ".slurm"))
DAEMONS = ("munged", "slurmctld", "slurmd")   # start order; stop is the reverse


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
    def munge_key(self) -> Path:
        return self.state_dir / "etc" / "munge.key"

    @property
    def munge_socket(self) -> Path:
        return self.state_dir / "run" / "munge.socket"

    @property
    def bin_dir(self) -> Path:
        return self.state_dir / "bin"

    @property
    def env(self) -> dict[str, str]:
        """Environment for every SLURM client (sbatch, squeue, submitit, pytest): SLURM_CONF, and PATH with
        ``bin/`` first, for the ``sacct`` shim (``embedgrid.slurm.sacct``) submitit polls."""
        return {"SLURM_CONF": str(self.conf), "PATH": os.pathsep.join([str(self.bin_dir), *self._path_without_bin()])}

    def _path_without_bin(self) -> list[str]:
        """This process's PATH entries without ``bin/`` (the shim's real sacct; ``env`` lists bin/ once, first)."""
        return [p for p in os.environ.get("PATH", os.defpath).split(os.pathsep) if p and p != str(self.bin_dir)]

    def write_sacct_shim(self) -> Path:
        """``bin/sacct``: this interpreter running ``embedgrid.slurm.sacct`` over the cluster's job-completion log."""
        import shlex
        import sys

        import embedgrid

        real = shutil.which("sacct", path=os.pathsep.join(self._path_without_bin())) or "/usr/bin/sacct"
        package_root = Path(embedgrid.__file__).resolve().parents[1]
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        shim = self.bin_dir / "sacct"
        shim.write_text("#!/bin/sh\n# written by embedgrid.slurm: sacct for a cluster without slurmdbd\n"
                        f"PYTHONPATH={shlex.quote(str(package_root))}${{PYTHONPATH:+:$PYTHONPATH}} exec "
                        f"{shlex.quote(sys.executable)} -m embedgrid.slurm.sacct "
                        f"--jobcomp {shlex.quote(str(self.state_dir / 'log' / 'jobcomp.txt'))} "
                        f"--real-sacct {shlex.quote(real)} -- \"$@\"\n")
        shim.chmod(0o755)
        return shim

    def _client_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def write_config(self) -> Path:
        d, host = self.state_dir, socket.gethostname().split(".")[0]
        for sub in ("etc", "state", "spool", "run", "log", "dev"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "run").chmod(0o700)  # the munge socket: root only (munged itself wants it world-reachable: --force)
        hw = node_hardware()
        layout = " ".join(f"{k}={hw[k]}" for k in ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket",
                                                   "ThreadsPerCore", "RealMemory") if k in hw)
        gres = f" Gres=gpu:{self.gpus}" if self.gpus else ""
        self.conf.write_text(f"""\
# Written by `python -m embedgrid.slurm start` (embedgrid/slurm/cluster.py). One node, fake GPUs,
# ports bound to 127.0.0.1 only, messages signed by the private munged of this state directory.
ClusterName=embedgrid
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={self.port}
SlurmdPort={self.port + 1}
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=5,socket={self.munge_socket}
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
        self.write_sacct_shim()
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

    def _ensure_munge_key(self) -> None:
        key = self.munge_key
        if not key.exists():
            proc = _run(["mungekey", "--create", "--keyfile", str(key)])
            if proc.returncode != 0:
                raise SlurmError(f"mungekey failed to create {key}: {proc.stderr.strip()}")
        st = key.stat()
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:  # munged runs with --force, so check it here
            raise SlurmError(f"{key} must be owned by uid {os.geteuid()} with mode 600 (it is uid {st.st_uid}, "
                             f"mode {st.st_mode & 0o777:o}); delete it and start again for a new key")

    def _start_munged(self, timeout: float = 10.0) -> None:
        # --force: munged wants its socket reachable by every user; ours is deliberately root only (run/ 700).
        run, log = self.state_dir / "run", self.state_dir / "log"
        proc = _run(["munged", "--force", f"--key-file={self.munge_key}", f"--socket={self.munge_socket}",
                     f"--pid-file={run / 'munged.pid'}", f"--log-file={log / 'munged.log'}",
                     f"--seed-file={run / 'munged.seed'}"])
        if proc.returncode != 0:
            raise SlurmError(f"munged failed to start ({proc.returncode}): {proc.stderr.strip()}; "
                             f"see {log / 'munged.log'}")
        deadline = time.monotonic() + timeout
        while _run(["munge", "-n", "-S", str(self.munge_socket)]).returncode != 0:
            if time.monotonic() > deadline:
                raise SlurmError(f"munged on {self.munge_socket} does not answer; see {log / 'munged.log'}")
            time.sleep(0.1)

    def start(self, timeout: float = 60.0) -> dict[str, str]:
        """Start (or take over) munged, slurmctld and slurmd, wait until the node is idle, and check that no
        port listens beyond loopback; returns the client env."""
        for binary in (*DAEMONS, "mungekey", "munge", "sbatch", "scontrol", "sinfo"):
            if shutil.which(binary) is None:
                raise SlurmError(f"`{binary}` not found: install Debian's slurm-wlm (./setup.sh does it)")
        if os.geteuid() != 0:
            raise SlurmError("the local SLURM cluster runs its daemons as root (SlurmUser=root, fake GPU "
                             "devices via mknod); run as root, e.g. in a container or CI")
        self.write_config()
        self._ensure_munge_key()
        for daemon in DAEMONS:
            if self._pid(daemon) is not None:
                continue
            if daemon == "munged":
                self._start_munged()
                continue
            proc = _run([daemon, "-f", str(self.conf)], env=self._client_env())
            if proc.returncode != 0:
                raise SlurmError(f"{daemon} failed to start ({proc.returncode}): {proc.stderr.strip()}; "
                                 f"see {self.state_dir / 'log' / (daemon + '.log')}")
        self._refuse_exposed()  # daemons left running never wait for idle with a config they do not speak
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.node_state()
            if state.startswith(("drain", "drng")):  # a node once INVALID stays drained after the fix
                host = socket.gethostname().split(".")[0]
                _run(["scontrol", "update", f"nodename={host}", "state=resume"], env=self._client_env())
            if state in ("idle", "mix", "alloc"):
                break
            time.sleep(0.2)
        else:
            raise SlurmError(f"node not idle after {timeout:.0f} s (state {state!r}); see {self.state_dir / 'log'}")
        self._refuse_exposed()
        return self.env

    def _refuse_exposed(self) -> None:
        """Stop the cluster and raise if any of its ports listens beyond loopback (e.g. daemons of an older
        config -- auth/none on 0.0.0.0 -- still running from this state directory)."""
        exposed = [s for s in self.listening() if not s.loopback]
        if exposed:
            self.stop()
            raise SlurmError(f"stopped the cluster in {self.state_dir}: its ports listened beyond loopback ("
                             + ", ".join(f"{s.process}[{s.pid}] on {s.address}:{s.port}" for s in exposed)
                             + "); start it again")

    def processes(self) -> dict[int, str]:
        """pid -> name of this cluster's processes: munged, the SLURM daemons, and slurmstepd/srun of its jobs."""
        found = slurm_processes(str(self.conf))
        found.update({pid: daemon for pid, daemon in ((self._pid(d), d) for d in DAEMONS) if pid})
        return found

    def listening(self) -> list[Listener]:
        """Every TCP socket in LISTEN state held by one of this cluster's processes."""
        return listening_sockets(self.processes())

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel every job, shut the SLURM daemons down (``scontrol shutdown`` alone leaves jobs running),
        then munged (the daemons need it until they are gone)."""
        env = self._client_env()
        if self._pid("slurmctld"):
            _run(["scancel", "--full", "--quiet", "--user", str(os.getuid())], env=env)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _run(["squeue", "-h"], env=env).stdout.strip():
                time.sleep(0.5)
            if _run(["scontrol", "shutdown"], env=env).returncode != 0:  # e.g. daemons of another auth type
                self._signal(("slurmctld", "slurmd"), signal.SIGTERM)
        self._wait_gone(("slurmctld", "slurmd"), timeout)
        self._signal(("munged",), signal.SIGTERM)
        self._wait_gone(("munged",), timeout)

    def _signal(self, daemons: tuple[str, ...], sig: int) -> None:
        for daemon in daemons:
            pid = self._pid(daemon)
            if pid:
                os.kill(pid, sig)

    def _wait_gone(self, daemons: tuple[str, ...], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self._pid(d) for d in daemons):
            time.sleep(0.1)
        self._signal(daemons, signal.SIGKILL)  # last resort: a daemon that ignored the shutdown

    def status(self) -> str:
        lines = [f"SLURM_CONF={self.conf}"]
        for daemon in DAEMONS:
            pid = self._pid(daemon)
            lines.append(f"{daemon}: {'running (pid %d)' % pid if pid else 'stopped'}")
        lines += [f"  {s.process}[{s.pid}] listens on {s.address}:{s.port}" for s in self.listening()]
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
