"""A module built with keyword arguments is read as one built positionally: remote code often
spells `nn.Linear(in_features=d, out_features=r, bias=False)` or `MyRMSNorm(hidden_size=r)`,
and the analysis reads widths from a module's leading arguments (the latent norms' widths,
the projections' ranks). A renamed deepseek_v3 copy whose latent attention builds every
projection and norm with keywords gives the same features as the plain renamed copy; before,
its kv norm had no width and the latent read 'q', refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codegen.analyze.evaluate import with_positions
from codegen.cli import main
from codegen.verify.remote_fixture import remote_folder

pytest.importorskip("transformers.models.deepseek_v3")

KEYWORDS = [
    (
        "        self.q_a_layernorm = {camel}RMSNorm(self.q_lora_rank)"
        " if self.q_lora_rank is not None else None\n",
        "        self.q_a_layernorm = {camel}RMSNorm(hidden_size=self.q_lora_rank)"
        " if self.q_lora_rank is not None else None\n",
    ),
    (
        "        self.kv_a_layernorm = {camel}RMSNorm(config.kv_lora_rank)\n",
        "        self.kv_a_layernorm = {camel}RMSNorm(hidden_size=config.kv_lora_rank)\n",
    ),
    (
        "        self.kv_b_proj = nn.Linear(\n"
        "            config.kv_lora_rank,\n"
        "            self.num_heads * (self.qk_nope_head_dim + self.v_head_dim),\n",
        "        self.kv_b_proj = nn.Linear(\n"
        "            in_features=config.kv_lora_rank,\n"
        "            out_features=self.num_heads * (self.qk_nope_head_dim + self.v_head_dim),\n",
    ),
]


def _features(folder: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["analyze", str(folder), "--json"]) == 0
    (found,) = json.loads(capsys.readouterr().out)
    return {k: v for k, v in found.items() if k not in ("target", "source", "evidence")}


def test_keyword_built_latent_modules_read_as_positional_ones(tmp_path, capsys):
    plain = remote_folder("deepseek_v3", tmp_path / "plain", name="quarrystone")
    spelled = remote_folder("deepseek_v3", tmp_path / "spelled", name="quarrystone")
    (path,) = spelled.glob("modeling_*.py")
    text = path.read_text()
    for old, new in KEYWORDS:
        old, new = (s.format(camel="Quarrystone") for s in (old, new))
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)
    want, got = _features(plain, capsys), _features(spelled, capsys)
    assert got["attention"]["latent_norms"] == "q_kv"
    assert got == want


def test_keywords_continue_the_positions_in_parameter_order():
    parameters = ("in_features", "out_features", "bias")
    assert with_positions((4,), {"out_features": 8, "bias": False}, parameters) == (4, 8, False)
    assert with_positions((), {"out_features": 8}, parameters) == ()  # a gap stops the run
    assert with_positions((4, 8), {"device": "meta"}, parameters) == (4, 8)
