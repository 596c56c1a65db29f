"""End to end: hrm_text's prefix LM under written-out attention. No installed architecture
has both (hrm_text's attention is SDPA), but a rule that writes the attention out (soft-cap,
sinks, ALiBi, relative bias) runs before `type_block_mask`, whose per-call mask (batch, 1,
seq, seq) the layers then take. The package gets the soft-cap step, its cap None (a field
hrm_text's config does not have; the case sets it), and verify checks it against the
installed transformers model in fp32 and bf16 with token types drawn. The mask's additive
table (0 / -inf) is built once per forward, before the stacks run, and every layer adds it
in place; a seeded defect (the layers handed the causal table, not the block's) fails
verify at the first attention."""

from __future__ import annotations

import ast
import dataclasses

import pytest

from codegen.scaffold.plan import Step, make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seeded_copy, verify_toy, write_planned
from codegen.verify.run import Case
from codegen.verify.tiny_config import tiny_config

pytest.importorskip("transformers.models.hrm_text")

TARGET = "hrm_text"
SOFTCAP = Step(
    "add_attention_softcap",
    {"hf_field": "attn_logit_softcapping"},
    "attention_softcap",
    "the attention written out",
)
TABLE = 'future.new_full(mask.shape, float("-inf")).masked_fill_(mask, 0.0)'
HANDED = "inner = self.inner(inner + h, rope, hidden_mask)"


def case() -> Case:
    return Case(f"{TARGET}+written-out", tiny_config(TARGET, attn_logit_softcapping=None))


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    target = load_target(TARGET)
    plan = make_plan(target)
    # the toy config carries attn_logit_softcapping (None), a field the class lacks, so
    # that the softcap step writes the attention out: the package may read it
    fields = target.config_fields | {"attn_logit_softcapping"}
    target = dataclasses.replace(target, config_fields=fields)
    steps = list(plan.steps)
    steps.insert([s.rule for s in steps].index("type_block_mask"), SOFTCAP)
    return write_planned(tmp_path_factory.mktemp("typed") / "models", (target, plan), steps=steps)


def test_the_masks_table_is_built_once_per_forward(package):
    models, name = package
    model = (models / name / "model.py").read_text()
    tree = ast.parse(model)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    attention = ast.unparse(classes["Attention"])
    assert "scores.add_(hidden)" in attention
    assert "torch.where" not in attention and "torch.ones" not in attention
    assigned = [
        (ast.unparse(n.targets[0]), ast.unparse(n.value))
        for n in ast.walk(classes["Model"])
        if isinstance(n, ast.Assign)
    ]
    table = ast.unparse(ast.parse(TABLE))
    assert assigned.count(("hidden_mask", f"future if mask is None else {table}")) == 1
    assert HANDED in model


def test_written_out_typed_attention_verifies(package):
    results = verify_toy(*package, dtypes=("fp32", "bf16"), case=case())
    assert [r.dtype for r in results] == ["fp32", "bf16"], results
    assert all(r.status == "pass" for r in results), [r.error for r in results]


def test_the_causal_table_in_place_of_the_blocks_fails_at_the_first_attention(tmp_path, package):
    models = tmp_path / "models"
    seeded_copy(
        package[0], models, package[1], HANDED, "inner = self.inner(inner + h, rope, future)"
    )
    (result,) = verify_toy(models, package[1], case=case())
    assert result.status == "fail", result
    assert result.first_divergence.startswith("inner.layers.0.attention"), result.first_divergence
