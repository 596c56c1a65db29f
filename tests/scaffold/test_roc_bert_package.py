"""End to end: roc_bert (BERT's embeddings module plus side tables: glyph-shape and
pronunciation rows concatenated to the token rows and mapped back to the hidden size by
`map_inputs_layer`), planned from its analysis, scaffolded and verified against the installed
transformers model (fp32). The side tables' ids are optional forward inputs: with them the
package matches HF with `concat_input` on and off. Seeded defects in the generated source
(a side table dropped, the concatenation's order swapped, the map layer skipped) fail verify
and name the embeddings.

HF's side tables have their padding row at `pad_token_id`; verify holds padding rows at
zero (a trained checkpoint never moves them), so with the toy's pad id 0 the row 0 that a
call without side ids reads is zero. Verify's long input therefore gives the side tables
random ids of their own (`codegen/verify/id_inputs.py`): the defects fail the toy as it is."""

from __future__ import annotations

import shutil

import pytest
import torch

from codegen.models import load_spec
from codegen.scaffold.pipeline import scaffold_into
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, verify_toy
from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint
from codegen.verify.run import Case, verify_case
from codegen.verify.tiny_config import tiny_config

PAD = 3  # a padding id other than 0: row 0 of the side tables holds weights


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    target = load_target("roc_bert")
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    assert {"embedding_module", "side_tables"} <= {s.rule for s in plan.steps}
    models = tmp_path_factory.mktemp("roc_bert") / "models"
    scaffold_into(
        models,
        plan.reference,
        plan.name,
        list(plan.model_types),
        plan.steps,
        features=target.features,
        target=target,
    )
    return models / plan.name, plan.name


def _verify(models, name, **overrides):
    case = Case("roc_bert+test", tiny_config("roc_bert", **overrides))
    (result,) = verify_case(load_spec(name, models), case, ["fp32"], gradients=False)
    return result


@pytest.mark.parametrize("overrides", [{}, {"pad_token_id": PAD}])
def test_the_package_verifies(package, overrides):
    folder, name = package
    result = _verify(folder.parent, name, **overrides)
    assert result.passed, result.error or result.first_divergence


@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("enable_shape", [True, False])
def test_side_ids_given_match_hf(package, tmp_path, concat, enable_shape):
    """The shape and pronunciation ids passed to both models: concatenated and mapped
    (concat_input), or averaged with the normed sum after the norm (without it)."""
    folder, name = package
    overrides = {"pad_token_id": PAD, "concat_input": concat, "enable_shape": enable_shape}
    if not concat:  # rows added to the normed sum: HF runs only tables as wide as the model
        hidden = tiny_config("roc_bert").hidden_size
        overrides.update(shape_embed_dim=hidden, pronunciation_embed_dim=hidden)
    config = tiny_config("roc_bert", **overrides)
    save_checkpoint(random_hf_model(config, 0), tmp_path / "hf")
    spec = load_spec(name, folder.parent)
    _, house, adapter = spec.build(config)
    checkpoint = load_checkpoint(tmp_path / "hf")
    kept = {k: v for k, v in checkpoint.items() if k not in adapter.unmapped_keys(checkpoint)}
    house.load_state_dict(adapter.from_hf(kept), strict=True)
    house.eval()
    hf = random_hf_model(config, 0)
    generator = torch.Generator().manual_seed(7)
    tokens = torch.randint(0, config.vocab_size, (2, 9), generator=generator)
    shape = torch.randint(0, config.shape_vocab_size, (2, 9), generator=generator)
    sound = torch.randint(0, config.pronunciation_vocab_size, (2, 9), generator=generator)
    with torch.no_grad():
        for ids in ({}, {"input_shape_ids": shape, "input_pronunciation_ids": sound}):
            want = hf(input_ids=tokens, **ids).logits
            got = house(tokens, **ids)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    if enable_shape:  # the ids change the logits: they are read, not ignored
        with torch.no_grad():
            assert not torch.allclose(house(tokens), house(tokens, input_shape_ids=shape))


def test_side_ids_with_packed_documents_are_refused(package):
    folder, name = package
    config = tiny_config("roc_bert")
    _, house, _ = load_spec(name, folder.parent).build(config)
    tokens = torch.zeros(1, 4, dtype=torch.long)
    with pytest.raises(NotImplementedError, match="packed"):
        house(tokens, cu_seqlens=torch.tensor([0, 4]), input_shape_ids=tokens)


def _fails_in_the_embeddings(result) -> None:
    assert not result.passed
    # the embedding stage: where the first layer receives the embeddings module's output
    assert (result.first_divergence or "").startswith(
        "embedding (tok_embeddings) (HF roc_bert.embeddings.word_embeddings)"
    ), result.first_divergence


# the side tables' rows dropped, concatenated out of order, or never mapped back
DEFECTS = {
    "dropped side table": (  # the pronunciation rows replaced by zeros of their width
        "parts.append(side_rows(self.pronunciation_embed, input_pronunciation_ids, tokens))",
        "parts.append(0 * side_rows(self.pronunciation_embed, input_pronunciation_ids, tokens))",
    ),
    "swapped concatenation": (  # as wide in all, so the map layer runs on the wrong rows
        "h = self.concat_proj(torch.cat(parts, dim=-1))",
        "h = self.concat_proj(torch.cat([parts[0], parts[2], parts[1]], dim=-1))",
    ),
    "skipped map layer": (  # the token rows go on as they are: the concatenation never mapped
        "h = self.concat_proj(torch.cat(parts, dim=-1))",
        "h = torch.cat(parts, dim=-1)[..., : h.shape[-1]]",
    ),
}


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_side_table_defect_fails_the_default_toy_in_the_embeddings(package, tmp_path, defect):
    """The toy as it is (padding row 0 of every table at zero): verify gives the side
    tables random ids of their own, so a table dropped or put in the wrong place shows."""
    folder, name = package
    models = tmp_path / "models"
    shutil.copytree(folder.parent, models)
    seed(models, name, *DEFECTS[defect])
    (result,) = verify_toy(models, name, gradients=False, export=False)
    _fails_in_the_embeddings(result)


def test_the_plan_without_the_side_tables_step_fails(tmp_path):
    """Without side_tables the package neither builds nor maps the side tables and the map
    layer: their checkpoint keys are unmapped, verify fails."""
    from codegen.scaffold.pipeline import verify_generated

    target = load_target("roc_bert")
    plan = make_plan(target)
    steps = [s for s in plan.steps if s.rule != "side_tables"]
    models = tmp_path / "models"
    scaffold_into(
        models, plan.reference, plan.name, list(plan.model_types), steps, features=target.features
    )
    results = verify_generated(models, plan.name, ("fp32",), switches=False)
    assert results and any(r.status == "fail" for r in results)


def test_a_side_table_summed_over_the_tp_ranks_fails_tp2(package):
    """The shard-plan check runs verify's long input with its side ids: a side table whose
    gradient the plan sums over the tp ranks (`sharded_elementwise`, though every rank looks
    up all the ids) fails there. Without ids the table is read at its padding row alone,
    whose gradient is zero: the plan passed."""
    from codegen.verify.parallel import plan_module, verify_parallel

    folder, name = package
    spec = load_spec(name, folder.parent)
    plan = {**plan_module(spec).PLAN, "shape_embed": "sharded_elementwise"}
    result = verify_parallel(spec, tiny_config("roc_bert"), "tp=2", plan=plan)
    assert not result.passed
    assert "first differing gradient: shape_embed.weight" in (result.error or ""), result.line()


def test_the_fp8_check_gives_the_package_the_side_ids(package, monkeypatch):
    """The fp8 check's logits come from verify's inputs: the long input's shape ids reach
    the package's side table. (The release is replaced by one forward of the package on the
    long input, as `_run` makes it.)"""
    from codegen.verify import fp8

    folder, name = package
    spec = load_spec(name, folder.parent)
    seen = []

    def run(spec, config, *args):
        inputs = args[-6]  # (..., result, inputs, unquantized, mutate, fp32, layout, experts)
        house = spec.model(spec.args.from_hf_config(config)).eval()
        house.shape_embed.register_forward_hook(lambda module, ids, out: seen.append(ids[0]))
        with torch.no_grad():
            fp8._house_logits(house, inputs[-1])

    monkeypatch.setattr(fp8, "_run", run)
    config = tiny_config("roc_bert")
    fp8.verify_fp8_case(spec, Case("roc_bert", config), block=16)
    (ids,) = seen
    assert 0 <= int(ids.min()) and int(ids.max()) < config.shape_vocab_size
    assert len(ids.unique()) > 1  # not the row 0 every token reads without ids
