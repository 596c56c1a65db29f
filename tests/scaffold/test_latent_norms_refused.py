"""Latent attention (MLA) whose kv latent has no norm of its own width is refused: the
renamed deepseek_v3 copy whose kv norm is built over the latent and the rope key together
(`kv_lora_rank + qk_rope_head_dim` wide, applied before the split) reads
`attention.latent_norms = 'q'`; with the query latent's norm taken off too it reads 'none'.
The reference norms each latent at its own width (it realises None, q_kv and kv only), so
`scaffold` stops in one line naming the fact and its file:line, writes nothing, and `analyze`
lists the fact as unsupported with its reason. Without the reference's row of realised
values the planner would write the reference's model for it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from codegen.cli import main
from codegen.verify.remote_fixture import remote_folder

pytest.importorskip("transformers.models.deepseek_v3")

KV_NORM = "        self.kv_a_layernorm = {camel}RMSNorm(config.kv_lora_rank)\n"
WHOLE_KV_NORM = (
    "        self.kv_a_layernorm = {camel}RMSNorm(config.kv_lora_rank + config.qk_rope_head_dim)\n"
)
EDITS = {
    "q": [
        (KV_NORM, WHOLE_KV_NORM),
        (
            "        compressed_kv = self.kv_a_proj_with_mqa(hidden_states)\n",
            "        compressed_kv = self.kv_a_layernorm(self.kv_a_proj_with_mqa(hidden_states))\n",
        ),
        ("        kv_nope = self.kv_a_layernorm(kv_nope)\n", ""),
    ],
}
EDITS["none"] = EDITS["q"] + [
    (
        "self.q_b_proj(self.q_a_layernorm(self.q_a_proj(hidden_states)))",
        "self.q_b_proj(self.q_a_proj(hidden_states))",
    ),
    (
        "        self.q_a_layernorm = {camel}RMSNorm(self.q_lora_rank)"
        " if self.q_lora_rank is not None else None\n",
        "",
    ),
]


def _folder(dest: Path, value: str) -> Path:
    name = f"fernhollow{value}"
    folder = remote_folder("deepseek_v3", dest, name=name)
    (path,) = folder.glob("modeling_*.py")
    text = path.read_text()
    for old, new in EDITS[value]:
        old, new = (s.format(camel=name.capitalize()) for s in (old, new))
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)
    return folder


@pytest.mark.parametrize("value", sorted(EDITS))
def test_an_unnormed_kv_latent_is_refused_in_one_line(tmp_path, capsys, value):
    folder = _folder(tmp_path / "hub", value)
    models = tmp_path / "models"
    assert main(["scaffold", str(folder), "--out", str(models)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    fact = f"no rule realises attention.latent_norms = {value!r} ("
    assert fact in err and err.rstrip().endswith("nothing written"), err
    where = err.split(fact, 1)[1]
    assert re.match(rf"modeling_{folder.name}\.py:\d+ ", where), err
    assert not models.exists()
    assert main(["analyze", str(folder)]) == 0
    unsupported = capsys.readouterr().out.split("unsupported:", 1)[1]
    assert f"- attention.latent_norms: attention.latent_norms = {value!r}:" in unsupported
    assert "without a norm of" in unsupported
