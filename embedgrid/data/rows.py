"""The training row every source produces: a query, its positive, optional hard negatives and instruction."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    query: str
    positive: str
    negatives: tuple[str, ...] = field(default_factory=tuple)
    instruction: str | None = None

    @classmethod
    def from_mapping(cls, data: dict, where: str) -> "Row":
        """Validate one raw record; ``where`` (e.g. ``file.jsonl:12``) goes into every error message."""
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object with 'query' and 'positive', got {type(data).__name__}")
        for key in ("query", "positive"):
            if not isinstance(data.get(key), str) or not data[key].strip():
                raise ValueError(f"{where}: '{key}' must be a non-empty string, got {data.get(key)!r}")
        negatives = data.get("negatives", [])
        if isinstance(negatives, str):
            negatives = [negatives]
        if not isinstance(negatives, list) or not all(isinstance(n, str) for n in negatives):
            raise ValueError(f"{where}: 'negatives' must be a list of strings, got {negatives!r}")
        instruction = data.get("instruction")
        if instruction is not None and not isinstance(instruction, str):
            raise ValueError(f"{where}: 'instruction' must be a string, got {instruction!r}")
        unknown = set(data) - {"query", "positive", "negatives", "instruction"}
        if unknown:
            raise ValueError(f"{where}: unknown fields {sorted(unknown)}; valid: query, positive, negatives, "
                             "instruction")
        return cls(data["query"], data["positive"], tuple(negatives), instruction)
