"""Refuse HF settings a model package does not implement, instead of ignoring them."""

from __future__ import annotations

from typing import Any


def require_settings(hf_config: Any, expected: dict[str, Any]) -> None:
    """Raise if a config field this package hard-codes has another value.

    A field the config class does not have counts as having the expected value, so one
    table serves every config class a package supports. A dotted key (`attn_config.clip_qkv`)
    is a field of a sub-config (an object or a dict). `{"same_as": "other"}` asks for the
    value of the config's field `other` (OPT's word_embed_proj_dim equal to hidden_size).
    """
    for key, value in expected.items():
        if isinstance(value, dict) and set(value) == {"same_as"}:
            other = value["same_as"]
            actual, wanted = _field(hf_config, key, None), _field(hf_config, other, None)
            if actual is not None and actual != wanted:
                raise NotImplementedError(
                    f"{type(hf_config).__name__}.{key}={actual!r} is not supported "
                    f"(expected {other}={wanted!r})"
                )
            continue
        actual = _field(hf_config, key, value)
        if actual != value:
            raise NotImplementedError(
                f"{type(hf_config).__name__}.{key}={actual!r} is not supported (expected {value!r})"
            )


def _field(hf_config: Any, key: str, default: Any) -> Any:
    holder = hf_config
    for part in key.split("."):
        if isinstance(holder, dict):
            holder = holder.get(part, default)
        else:
            holder = getattr(holder, part, default)
        if holder is default:
            return default
    return holder


def padding_row(pad_token_id: Any, vocab_size: int) -> int | None:
    """The word table's padding row (`nn.Embedding`'s `padding_idx`): `pad_token_id`, which
    nn.Embedding accepts from -vocab_size to vocab_size - 1; None: no padding row. Any other
    id is refused in one line, as HF's model cannot be built with it either."""
    if pad_token_id is None:
        return None
    if isinstance(pad_token_id, bool) or not isinstance(pad_token_id, int):
        raise ValueError(f"pad_token_id={pad_token_id!r} is not a token id")
    if not -vocab_size <= pad_token_id < vocab_size:
        raise ValueError(
            f"pad_token_id={pad_token_id} is not a row of the word table (vocab_size={vocab_size})"
        )
    return pad_token_id
