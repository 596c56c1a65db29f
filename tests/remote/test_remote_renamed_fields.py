"""A remote-code folder whose config names its structural sizes otherwise scaffolds a
package that reads them where its code does, and verifies.

The folder is the renamed copy of qwen3 (`remote_folder`) with its config fields renamed
too (`renamed_fields.rename_fields`): the FFN width `mlp_width`, the vocabulary `n_tokens`,
the head counts `n_q_heads` / `n_kv`, or the head width `head_width`. No alias table knows
these names; the analysis reads them off the constructor calls (`nn.Embedding(config.
n_tokens, ...)`), so the package reads `hf_config.n_tokens`, not a `vocab_size` the config
lacks (an AttributeError) or a fallback of another value (`hidden_size // heads` for the
head width: a different model). An FFN its decoder layer holds inline (an OPT copy's
`fc1 = nn.Linear(embed_dim, config.mlp_width)` beside the attention) is sized by the up
projection's field, where no alias names it (`ffn_dim` is one).
"""

from __future__ import annotations

import json

import pytest
from renamed_fields import rename_fields

from codegen.analyze.analysis import analyze
from codegen.cli import main
from codegen.verify.remote_fixture import remote_folder

# the probe's fields, each read by the code as it is
SIZES = {
    "intermediate_size": "mlp_width",
    "vocab_size": "n_tokens",
    "rms_norm_eps": "norm_epsilon",
    "attention_bias": "qkv_bias",
}
HEADS = {"num_attention_heads": "n_q_heads", "num_key_value_heads": "n_kv"}
# the head width alone: with the head counts renamed too the analysis finds no head count
HEAD_WIDTH = {"head_dim": "head_width"}
# OPT's inline FFN width, under a name no alias table holds
INLINE_WIDTH = {"ffn_dim": "mlp_width"}


def test_the_analysis_reads_each_size_where_the_constructors_do(tmp_path) -> None:
    folder = remote_folder("qwen3", tmp_path / "hub", name="quillon")
    features = analyze(str(rename_fields(folder, SIZES | HEADS)))
    assert features.ffn.width_field == "mlp_width"
    assert features.embedding.vocab_field == "n_tokens"
    assert features.attention.heads_field == "n_q_heads"
    assert features.attention.kv_heads_field == "n_kv"
    assert features.attention.head_dim_field == "head_dim"
    assert features.block.layers_field == "num_hidden_layers"
    width = analyze(str(rename_fields(folder, HEAD_WIDTH))).attention.head_dim_field
    assert width == "head_width"  # the factor q's and k's widths share, in no attribute


def test_an_inline_ffns_width_is_its_up_projections_field(tmp_path) -> None:
    folder = rename_fields(remote_folder("opt", tmp_path / "hub", name="quillopt"), INLINE_WIDTH)
    ffn = analyze(str(folder)).ffn
    assert (ffn.source, ffn.width_field) == ("inline", "mlp_width")


# the settings the llama-based package of OPT refuses in from_hf_config (as `codegen verify
# opt` does): every other case must pass
OPT_REFUSED = {
    "do_layer_norm_before=False",
    "enable_bias=False",
    "layer_norm_elementwise_affine=False",
    "word_embed_proj_dim=192",
}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model_type", "renames", "refused"),
    [
        ("qwen3", SIZES | HEADS, set()),
        ("qwen3", HEAD_WIDTH, set()),
        ("opt", INLINE_WIDTH, OPT_REFUSED),
    ],
    ids=["sizes-and-heads", "head-width", "inline-ffn-width"],
)
def test_a_folder_with_renamed_size_fields_verifies(
    model_type, renames, refused, tmp_path, capsys
) -> None:
    folder = rename_fields(remote_folder(model_type, tmp_path / "hub", name="quillon"), renames)
    out = tmp_path / "models"
    assert main(["scaffold", str(folder), "--out", str(out)]) == 0
    capsys.readouterr()
    verify = ["verify", str(folder), "--models", str(out), "--trust-remote-code"]
    main([*verify, "--dtype", "fp32", "--json"])
    # transformers prints an `[ERROR]` line per undocumented config argument before the rows
    printed = capsys.readouterr().out
    rows = json.loads(printed[printed.index("[\n") :])
    base = [row for row in rows if "+" not in row["case"]]
    assert base and base[0]["status"] == "pass", base
    status = {row["case"].partition("+")[2]: row["status"] for row in rows}
    assert {case for case, s in status.items() if s == "refused"} == refused, rows
    assert all(s == "pass" for case, s in status.items() if case not in refused), rows


@pytest.mark.slow
@pytest.mark.parametrize("mode", [["--fp8"], ["--parallel", "tp=2"]], ids=["fp8", "tp"])
def test_fp8_and_parallel_draw_ids_below_the_renamed_vocabulary(mode, tmp_path, capsys) -> None:
    """verify's fp8 and shard-plan paths read the vocabulary as the package does: a config
    without `vocab_size` (its `n_tokens`) once stopped both with an AttributeError."""
    folder = rename_fields(remote_folder("qwen3", tmp_path / "hub", name="quillon"), SIZES)
    out = tmp_path / "models"
    assert main(["scaffold", str(folder), "--out", str(out)]) == 0
    capsys.readouterr()
    verify = ["verify", str(folder), "--models", str(out), "--trust-remote-code", *mode]
    assert main(verify) == 0
    printed = capsys.readouterr().out.splitlines()
    statuses = [line.split()[0] for line in printed if line[:1].isupper()]
    assert "PASS" in statuses and "FAIL" not in statuses, statuses
