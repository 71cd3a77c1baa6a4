"""Every exception a user of embedgrid can meet, in one place: defined here and imported from here only.

Each message names what was wrong (the path, the key, the bad value) and what to do about it.
"""
from __future__ import annotations


class ConfigError(ValueError):
    """A config value is invalid: the message names the key, the bad value and the valid choices."""


class CellConflict(RuntimeError):
    """The cell directory holds results (or a model) of a different configuration, or is not a cell directory."""


class CellBusy(RuntimeError):
    """Another process is running this cell (two sweeps over one directory, or a relaunch while one runs)."""


class CorruptCellRecord(RuntimeError):
    """A cell's ``cell.json`` cannot be read (truncated or not a JSON object); the message names the file."""


class TornFile(ValueError):
    """A file read back from disk is truncated or unreadable (a full disk, a killed copy); names the file.

    ``path`` is the file. A cell moves such a file aside (``<file>.corrupt-<time>``) and rebuilds it."""

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = path


class WriteFailed(OSError):
    """Writing a file failed (a full disk, a read-only file system); the message names the path and the errno,
    whichever library was writing."""


class UntrustedEncoder(RuntimeError):
    """A saved encoder asks for code or a path that its directory may not choose (see ``load_encoder``)."""


class MissingAsset(RuntimeError):
    """An offline asset is not installed; the message names what installs it."""


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or inf."""


class Preempted(RuntimeError):
    """Raised after a checkpoint was written because the job was asked to stop (SIGTERM/SIGUSR1/SIGUSR2)."""


class RankZeroFailed(RuntimeError):
    """Raised on ranks > 0 when the work rank 0 did for all of them failed (rank 0 raises the original error)."""


class RankFailed(RuntimeError):
    """Raised on every other rank when one rank's share of work that all ranks do together failed (that rank
    raises the original error), so none of them waits for it in a collective."""


class GridFailed(RuntimeError):
    """Some cells of the sweep failed (each one's error and traceback are in its cell.json)."""


class SweepDirUnwritable(RuntimeError):
    """The sweep directory cannot be written."""


class SweepConflict(ValueError):
    """Two cells of one sweep map to the same cell directory."""


class AttentionMismatch(RuntimeError):
    """The backbone computes another attention mode than the one the cell asked for (the load-time probe)."""


class SlurmError(RuntimeError):
    """The local SLURM cluster or its controller failed."""


class MiningConflict(RuntimeError):
    """Hard-negative mining would overwrite an output or mix with work begun on other inputs or settings."""


__all__ = ["AttentionMismatch", "CellBusy", "CellConflict", "ConfigError", "CorruptCellRecord", "GridFailed",
           "MiningConflict", "MissingAsset", "NonFiniteLoss", "Preempted", "RankFailed", "RankZeroFailed", "SlurmError", "SweepConflict", "SweepDirUnwritable",
           "TornFile", "UntrustedEncoder", "WriteFailed", "InputUnavailable"]


class InputUnavailable(ConfigError):
    """A cell's input (data file, hub model or dataset) is missing, unreadable, unresolvable or does not parse;
    found before any job starts. The message names the key, the value and the fix."""


class ShardFailed(RuntimeError):
    """An evaluation shard job (``eval.shards``) could not score its tasks; the message names them and the cause.
    The cell stays unfinished; a relaunch scores only the tasks still missing."""
