"""End to end: inkling's residual short convolutions (a causal depthwise filter added back
to its input, on the key and value projections and on the attention's and the MLP's
outputs, computed in fp32), its word table's own norm and its MLP's output gain, planned
from the analysis, scaffolded and verified against the folder's own code. Seeded defects,
each a bug of the class these parts bring, fail verify and name the module.

The HF side is transformers' inkling text decoder as a renamed remote-code folder
(`remote_fixture`), with what no rule realises yet taken out of the copy: its MoE branch
(the toy's layers are dense). The filters, the table's norm and the MLP's learned output
gain are inkling's own, untouched; verify perturbs every tensor away from HF's init (the
gain from its one, the filters from their normal draw), and both test inputs are longer
than the kernel, so each tap is reached."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from codegen.scaffold.testing import plan_folder, seed, verify_folder, write_planned
from codegen.verify.remote_fixture import remote_folder

NAME = "quillon"
RULES = {"kv_convs", "output_convs", "embedding_norm", "ffn_output_gain"}


def derive(dest: Path) -> Path:
    """The renamed inkling text folder with the parts no rule realises taken out."""
    folder = remote_folder(
        "inkling_text", dest, name=NAME, config_values={"mlp_layer_types": ["dense"] * 6}
    )
    path = folder / f"modeling_{NAME}.py"
    source = path.read_text()
    prefix = re.search(r"class (\w+)MoE\b", source).group(1)
    edits = [
        # the MoE branch (the sink router and shared-expert gammas)
        (
            rf"        if config\.mlp_layer_types\[layer_idx\] == \"sparse\":\n"
            rf"            self\.mlp = {prefix}MoE\(config\)\n        else:\n"
            rf"            self\.mlp = ({prefix}MLP\(config\))\n",
            r"        self.mlp = \1\n",
        ),
    ]
    for pattern, replacement in edits:
        source, count = re.subn(pattern, replacement, source, flags=re.DOTALL)
        assert count, pattern  # the installed inkling changed: the fixture needs a look
    path.write_text(source)
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return derive(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def planned(folder):
    return plan_folder(folder, RULES)


def _verify(folder: Path, models: Path, capsys, dtypes=("fp32",)) -> list[dict]:
    """verify --json's rows of the base case (the toy config as the folder gives it)."""
    return verify_folder(folder, models, capsys, dtypes=dtypes, switches=False)


def test_package_verifies_in_fp32_and_bf16(tmp_path, folder, planned, capsys):
    models, _ = write_planned(tmp_path / "models", planned)
    rows = _verify(folder, models, capsys, ("fp32", "bf16"))
    assert rows and all(row["status"] == "pass" for row in rows), rows
    # engine readiness: built on meta and initialised as HF does (the gain at one, the
    # filters drawn normal); packed documents each restart the filters
    assert all(row["lifecycle_ok"] and row["packed_ok"] for row in rows), rows
    # in bf16 the package is HF bit for bit: the attention takes the bias as SDPA's additive
    # mask as HF's SDPA path does, on keys and values laid out as HF's (the filtered sum
    # first) and repeated per q head where HF repeats them (the kernel SDPA picks follows both)
    (bf16,) = [row for row in rows if row["dtype"] == "bf16"]
    assert bf16["same_dtype_diff"] == 0, bf16


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        # the key filter dropped: the attention's keys are the bare projection
        ("self.k_conv(self.wk(x))", "self.wk(x)", "layers.0.attention"),
        # the value filter reading the keys' weights
        ("self.v_conv(self.wv(x))", "self.k_conv(self.wv(x))", "layers.0.attention"),
        # the left padding cropped instead of the right one: each position sees the future
        ("mixed[..., :seq]", "mixed[..., -seq:]", "layers.0.attention"),
        # the filter's output alone, its input not added back
        (
            "transpose(1, 2) + y).to(x.dtype)",
            "transpose(1, 2) + 0 * y).to(x.dtype)",
            "layers.0.attention",
        ),
        # the attention's output joins the residual unfiltered
        (
            "x + self.attention_conv(self.attention(self.attention_norm(x), mask))",
            "x + self.attention(self.attention_norm(x), mask)",
            "layers.0",
        ),
        # the MLP's output joins the residual unfiltered
        (
            "h + self.ffn_conv(self.feed_forward(self.ffn_norm(h)))",
            "h + self.feed_forward(self.ffn_norm(h))",
            "layers.0",
        ),
        # the MLP's trained gain dropped
        (
            "self.w2(self.act(self.w1(x)) * self.w3(x)) * self.gain",
            "self.w2(self.act(self.w1(x)) * self.w3(x))",
            "layers.0.feed_forward",
        ),
        # the embeddings reach the first layer unnormed
        (
            "self.embedding_norm(self.tok_embeddings(tokens))",
            "self.tok_embeddings(tokens)",
            "embedding",
        ),
    ],
)
def test_seeded_defects_fail_and_name_the_module(
    tmp_path, folder, planned, capsys, old, new, where
):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, old, new)
    (row,) = _verify(folder, models, capsys)
    assert row["status"] == "fail", row
    assert (row.get("first_divergence") or "").startswith(where), (row.get("error"), row)


def _parallel(folder: Path, models: Path, capsys) -> dict:
    rows = verify_folder(folder, models, capsys, "--parallel", "tp=2", dtypes=())
    (row,) = [row for row in rows if "+" not in row["case"]]
    return row


def test_shard_plan_filters_each_ranks_kv_rows(tmp_path, folder, planned, capsys):
    """tp=2: the k/v filters hold the rows their projection holds (`filter_rows`), the
    output filters are whole on every rank; a whole key filter on a rank's half of the
    keys does not apply, and the check names it."""
    models, name = write_planned(tmp_path / "right", planned)
    row = _parallel(folder, models, capsys)
    assert row["status"] == "pass", row
    models, name = write_planned(tmp_path / "whole", planned)
    seed(
        models,
        name,
        '"layers.*.attention.k_conv.conv": "filter_rows"',
        '"layers.*.attention.k_conv.conv": "replicate"',
        file="parallelize.py",
    )
    row = _parallel(folder, models, capsys)
    assert row["status"] == "fail" and "k_conv" in json.dumps(row), row
