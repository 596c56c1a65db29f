"""Table-driven HF <-> house state-dict conversion.

A model package's adapter is a table, `from_hf_map`, of HF checkpoint keys to house keys
with `{}` placeholders (torchtitan style). `None` drops a key. A template with one more
placeholder on the HF side than on the house side is an expert-stacked weight: the HF
checkpoint stores one tensor per expert (`...experts.{}.gate_proj.weight`, as on disk), the
house model one 3-D tensor (`...experts.w1`) stacked along dim 0 in expert order.

Anything the table does not cover is reported, never silently skipped: a dropped weight is
the most common onboarding bug.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar


class UnmappedKeysError(KeyError):
    """Checkpoint keys that no row of the key table matches."""

    def __init__(self, keys: list[str]):
        self.keys = keys
        super().__init__(f"{len(keys)} checkpoint keys have no mapping: {', '.join(keys[:5])}")


@dataclass(frozen=True)
class _Row:
    hf: str
    house: str | None
    hf_pattern: re.Pattern
    house_pattern: re.Pattern | None

    @property
    def stacked(self) -> bool:
        return self.house is not None and self.hf.count("{}") == self.house.count("{}") + 1


def _pattern(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(r"\{\}", r"(\d+)") + "$")


class StateDictAdapter:
    """Converts state dicts with the subclass's `from_hf_map` table.

    Subclasses set `from_hf_map`; `args` is the model's ModelArgs (tying is read from
    `args.tie_word_embeddings`).
    """

    from_hf_map: ClassVar[dict[str, str | None]] = {}
    embedding_key: ClassVar[str] = "tok_embeddings.weight"
    output_key: ClassVar[str] = "output.weight"

    def __init__(self, args: Any):
        self.args = args
        self._rows = [
            _Row(hf, house, _pattern(hf), None if house is None else _pattern(house))
            for hf, house in self.from_hf_map.items()
        ]

    @property
    def tied(self) -> bool:
        return bool(getattr(self.args, "tie_word_embeddings", False))

    def _match_hf(self, key: str) -> tuple[_Row, tuple[str, ...]] | None:
        for row in self._rows:
            found = row.hf_pattern.match(key)
            if found:
                return row, found.groups()
        return None

    def unmapped_keys(self, hf_keys) -> list[str]:
        """HF keys that no table row matches (would be silently dropped otherwise)."""
        return sorted(key for key in hf_keys if self._match_hf(key) is None)

    def from_hf(self, hf_state_dict: dict[str, Any]) -> dict[str, Any]:
        """HF checkpoint (as on disk) -> house state dict. Raises on unmapped keys."""
        unmapped = self.unmapped_keys(hf_state_dict)
        if unmapped:
            raise UnmappedKeysError(unmapped)
        state_dict: dict[str, Any] = {}
        experts: dict[str, dict[int, Any]] = defaultdict(dict)
        for key, tensor in hf_state_dict.items():
            row, groups = self._match_hf(key)
            if row.house is None:
                continue
            if row.stacked:
                *outer, expert = groups
                experts[row.house.format(*outer)][int(expert)] = tensor
            else:
                state_dict[row.house.format(*groups)] = tensor
        for key, by_index in experts.items():
            state_dict[key] = _stack_experts(key, by_index)
        if self.tied and self.output_key not in state_dict and self.embedding_key in state_dict:
            state_dict[self.output_key] = state_dict[self.embedding_key]
        return state_dict

    def convert_single_to_hf(self, name: str, tensor: Any) -> list[tuple[str, Any]]:
        """One house tensor -> its HF (key, tensor) pairs (several for stacked experts)."""
        if self.tied and name == self.output_key:
            return []
        for row in self._rows:
            if row.house_pattern is None:
                continue
            found = row.house_pattern.match(name)
            if not found:
                continue
            groups = found.groups()
            if row.stacked:
                return [
                    (row.hf.format(*groups, index), expert)
                    for index, expert in enumerate(tensor.unbind(0))
                ]
            return [(row.hf.format(*groups), tensor)]
        raise KeyError(f"house key {name!r} has no HF mapping")

    def to_hf(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """House state dict -> HF checkpoint layout (per-expert keys, tied head omitted)."""
        hf_state_dict: dict[str, Any] = {}
        for name, tensor in state_dict.items():
            hf_state_dict.update(self.convert_single_to_hf(name, tensor))
        return hf_state_dict


def _stack_experts(key: str, by_index: dict[int, Any]):
    import torch

    count = len(by_index)
    if sorted(by_index) != list(range(count)):
        raise KeyError(f"{key}: expert indices {sorted(by_index)} are not 0..{count - 1}")
    return torch.stack([by_index[index] for index in range(count)])
