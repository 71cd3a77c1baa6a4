"""Which processes belong to a local SLURM cluster, and which TCP ports they listen on (loopback or not)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import psutil

LOOPBACK = ("127.", "::1", "::ffff:127.")
SLURM_PROCESSES = ("munged", "slurmctld", "slurmd", "slurmstepd", "srun")


@dataclass(frozen=True)
class Listener:
    pid: int
    process: str
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        return self.address.startswith(LOOPBACK)


def slurm_processes(conf: str) -> dict[int, str]:
    """pid -> executable of every SLURM process configured by conf: slurmctld (+ slurmscriptd), slurmd, and in
    jobs slurmstepd (a daemon, child of init) and srun. They all carry SLURM_CONF; a job's own programs are left out."""
    found, wanted = {}, f"SLURM_CONF={conf}".encode()
    for proc in psutil.process_iter(["exe"]):
        name = Path(proc.info["exe"] or "").name.removesuffix("-wlm")  # Debian's binary names
        if name not in SLURM_PROCESSES:
            continue
        try:  # raw: slurmstepd and slurmscriptd overwrite the start of their environ block with their title,
            #      and psutil's environ() then returns nothing
            if wanted in Path(f"/proc/{proc.pid}/environ").read_bytes().split(b"\0"):
                found[proc.pid] = name
        except OSError:
            continue  # gone meanwhile
    return found


def listening_sockets(pids: dict[int, str]) -> list[Listener]:
    """TCP sockets (IPv4 and IPv6) in LISTEN state held by pids (pid -> name)."""
    found = []
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            listener = Listener(conn.pid, pids[conn.pid], conn.laddr.ip, conn.laddr.port)
            if listener not in found:
                found.append(listener)
    return found
