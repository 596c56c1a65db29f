"""End to end: llama4_text's chunked layers under written-out attention. No architecture in
transformers has both (llama4_text's attention is SDPA), but a rule that writes the
attention out (soft-cap, sinks, ALiBi, relative bias) runs before `chunked_attention`, so
its layers already take the keys each mask hides, built once per forward: the chunk mask
must be handed down the same way. The package gets the soft-cap step, its cap None (the
field llama4_text's config stores but its code never reads), so the written-out maths is
checked against the installed transformers model with chunks shorter than the input."""

from __future__ import annotations

import ast
import dataclasses

import pytest

from codegen.scaffold.plan import Step, make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import verify_toy, write_planned
from codegen.verify.run import Case
from codegen.verify.tiny_config import tiny_config

TARGET = "llama4_text"
SOFTCAP = Step(
    "add_attention_softcap",
    {"hf_field": "attn_logit_softcapping"},
    "attention_softcap",
    "the attention written out",
)


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    target = load_target(TARGET)
    plan = make_plan(target)
    # the toy config carries attn_logit_softcapping (None), a field the class lacks, so
    # that the softcap step writes the attention out: the package may read it
    fields = target.config_fields | {"attn_logit_softcapping"}
    target = dataclasses.replace(target, config_fields=fields)
    steps = list(plan.steps)
    steps.insert([s.rule for s in steps].index("chunked_attention"), SOFTCAP)
    return write_planned(tmp_path_factory.mktemp("chunked") / "models", (target, plan), steps=steps)


def test_chunked_layers_take_their_hidden_keys_built_once(package):
    models, name = package
    model = (models / name / "model.py").read_text()
    table = "future.new_full(chunks.shape, float('-inf')).masked_fill_(chunks, 0.0)"
    assigned = {
        ast.unparse(n.targets[0]): ast.unparse(n.value)
        for n in ast.walk(ast.parse(model))
        if isinstance(n, ast.Assign)
    }
    assert assigned["hidden_chunks"] == f"future if chunks is None else {table}"
    assert "hidden_chunks if layer.chunked else" in model


def test_written_out_chunked_attention_verifies(package):
    config = tiny_config(TARGET, attn_logit_softcapping=None)
    assert "chunked_attention" in config.layer_types
    (result,) = verify_toy(*package, case=Case(f"{TARGET}+written-out", config))
    assert result.status == "pass", result.error
