"""Strip credentials from everything the project saves or logs: cell.json, summary.json, Hydra's YAML files,
log lines, the W&B run. Secrets belong in the environment (WANDB_API_KEY, HF_TOKEN); these are the safety net.

Three rules, applied together:
  * by key: the value of any key that looks like a credential (``api_key``, ``hf_token``, ``wandb_key``,
    ``auth``, ``access_key``, ``private_key``, ``password``, ...), in nested dicts and in ``key=value`` text
    (Hydra overrides such as ``+logger.api_key=...``, ``override_dirname``, log lines);
  * by shape: values that look like tokens wherever they stand (``sk-...``, ``hf_...``, ``ghp_...``,
    ``xox?-...``, ``AKIA...``, JWTs, PEM private keys, long mixed-case base64-like strings). Lowercase hex is not
    a token shape here: cell names, config hashes and commit revisions are lowercase hex;
  * by value: the values of secret-named environment variables (a 40-hex ``WANDB_API_KEY`` included), and every
    value seen under a secret key (``remember``), wherever they reappear.
"""
from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "<redacted>"

# ``token``/``auth`` only as a whole word part (``hf_token``, ``authToken``), never ``tokenizer``/``max_tokens``
# or a tokenizer's special-token keys (``pad_token``, ``eos_token_id``).
SECRET_KEY = re.compile(
    r"api[_-]?key|access[_-]?key|private[_-]?key|secret|passw(?:or)?d|passphrase|credential|wandb[_-]?key|"
    r"authorization|bearer|cookie|(?<![a-z])auth(?![a-z])|"
    r"(?<!pad_)(?<!eos_)(?<!bos_)(?<!unk_)(?<!sep_)(?<!cls_)(?<!mask_)token(?![a-z]|_ids?(?![a-z]))",
    re.IGNORECASE)

SECRET_VALUE = re.compile("|".join([
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
    r"\bsk-(?:[A-Za-z0-9]+-)*[A-Za-z0-9_-]{16,}",           # OpenAI / Anthropic style (sk-..., sk-proj-...)
    r"\bhf_[A-Za-z0-9]{16,}",                                 # Hugging Face
    r"\bgh[pousr]_[A-Za-z0-9]{20,}|\bgithub_pat_[A-Za-z0-9_]{20,}",  # GitHub
    r"\bglpat-[A-Za-z0-9_-]{20,}",                            # GitLab
    r"\bxox[abposr]-[A-Za-z0-9-]{10,}",                       # Slack
    r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b",                         # AWS access key id
    r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",  # JWT
    r"\blocal-[0-9a-f]{40}\b",                                # W&B local-server key
    # a long base64-like run with upper, lower case and digits (not a path, not a snake_case name)
    r"(?<![A-Za-z0-9+/=_-])(?=[A-Za-z0-9+/_-]*[A-Z])(?=[A-Za-z0-9+/_-]*[a-z])(?=(?:[A-Za-z+/_-]*[0-9]){4})"
    r"[A-Za-z0-9+_-]{32,}={0,2}(?![A-Za-z0-9+/=_-])",
]))

# key=value / key: value / 'key': 'value' in free text; the key is checked with SECRET_KEY.
KEY_VALUE = re.compile(
    r"(?P<key>[A-Za-z_][\w.\-]*)(?P<sep>['\"]?\s*(?:=|:\s)\s*)"
    r"(?P<val>'[^']*'|\"[^\"]*\"|\[[^\]]*\]|[^\s'\",;)}\]]+)")

_MIN_SECRET_LENGTH = 6  # shorter remembered values ("1", "true") would redact ordinary text
_remembered: set[str] = set()


def is_secret_key(key: Any) -> bool:
    return bool(SECRET_KEY.search(str(key)))


def remember(value: Any) -> None:
    """Redact this value wherever it appears from now on (e.g. a secret given as an override)."""
    if isinstance(value, str) and len(value) >= _MIN_SECRET_LENGTH and value != REDACTED:
        _remembered.add(value)


def remember_secrets(obj: Any) -> None:
    """Remember the values of every secret-looking key of a nested dict/list (and of ``key=value`` strings)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if is_secret_key(key) and isinstance(value, (str, int, float)) and not isinstance(value, bool):
                remember(str(value))
            else:
                remember_secrets(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            remember_secrets(value)
    elif isinstance(obj, str):
        for match in KEY_VALUE.finditer(obj):
            if is_secret_key(match["key"]):
                remember(match["val"].strip("'\""))


def known_secrets() -> list[str]:
    """Remembered values + values of secret-named environment variables, longest first."""
    values = set(_remembered)
    for name, value in os.environ.items():
        if is_secret_key(name) and len(value) >= _MIN_SECRET_LENGTH and value.lower() not in ("true", "false"):
            values.add(value)
    return sorted(values, key=len, reverse=True)


def _redact_pair(match: re.Match) -> str:
    if not is_secret_key(match["key"]):
        return match[0]
    value = match["val"]
    quote = value[0] if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) > 1 else ""
    return f"{match['key']}{match['sep']}{quote}{REDACTED}{quote}"


def redact_text(text: str) -> str:
    """Free text (an override, a log line, a YAML/JSON dump) with every secret replaced by ``<redacted>``."""
    if not text:
        return text
    for value in known_secrets():
        if value in text:
            text = text.replace(value, REDACTED)
    text = KEY_VALUE.sub(_redact_pair, text)
    return SECRET_VALUE.sub(REDACTED, text)


def redact(obj: Any) -> Any:
    """A copy of a nested dict/list with secret-keyed values replaced and secrets in strings redacted."""
    if isinstance(obj, dict):
        return {k: (REDACTED if is_secret_key(k) and v not in (None, "") else redact(v)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def redact_argv(argv: list[str]) -> list[str]:
    return [redact_text(arg) for arg in argv]
