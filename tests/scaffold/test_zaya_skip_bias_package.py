"""End to end: zaya's skip class routes with the selection bias HF routes with. HF's
`_init_weights` writes `balancing_biases[-1] = -1.0` by item assignment, and transformers runs
it after loading a checkpoint of its own models (only the `init.*` calls skip loaded
tensors), so `from_pretrained` routes with -1.0 whatever the checkpoint holds there. The
scaffolded package (installed zaya, planned from its analysis) sets the same value when its
weights are loaded: on a checkpoint storing 0.3 there (a value at which the toy's tokens pick
the skip class) its logits equal HF's; the package with the checkpoint's value does not."""

from __future__ import annotations

import pytest
import torch

from codegen.models import load_spec
from codegen.scaffold.plan import make_plan
from codegen.scaffold.target import load_target
from codegen.scaffold.testing import seed, write_planned
from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint
from codegen.verify.tiny_config import tiny_config

pytest.importorskip("transformers.models.zaya")

STORED = 0.3  # the skip class's bias in the checkpoint
LOADED = "        super()._load_from_state_dict(state_dict, prefix, *args)\n"
ON_LOAD = LOADED + "        self.e_score_correction_bias[-1] = -1.0\n"


@pytest.fixture(scope="module")
def planned():
    target = load_target("zaya")
    plan = make_plan(target)
    assert plan.complete, plan.gaps
    return target, plan


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random zaya checkpoint whose routers store STORED on the skip class, and the
    logits of HF's `from_pretrained` of it."""
    from transformers import AutoModelForCausalLM

    config = tiny_config("zaya")
    model = random_hf_model(config)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("balancing_biases"):
                buffer[-1] = STORED
    directory = tmp_path_factory.mktemp("hf")
    save_checkpoint(model, directory)
    loaded = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    biases = [b for n, b in loaded.named_buffers() if n.endswith("balancing_biases")]
    assert biases and all(b[-1].item() == -1.0 for b in biases)  # what HF routes with
    tokens = torch.randint(
        0, config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(3)
    )
    with torch.no_grad():
        logits = loaded(input_ids=tokens).logits
    return config, directory, tokens, logits


def _package_logits(models, name, checkpoint) -> torch.Tensor:
    config, directory, tokens, _ = checkpoint
    _, model, adapter = load_spec(name, models).build(config)
    model.load_state_dict(adapter.from_hf(load_checkpoint(directory)))
    with torch.no_grad():
        return model.eval()(tokens)


def test_the_package_routes_the_skip_class_as_hf_does(tmp_path, planned, checkpoint):
    models, name = write_planned(tmp_path / "models", planned)
    assert ON_LOAD in (models / name / "model.py").read_text()
    torch.testing.assert_close(_package_logits(models, name, checkpoint), checkpoint[3])


def test_the_checkpoints_value_gives_other_logits(tmp_path, planned, checkpoint):
    models, name = write_planned(tmp_path / "models", planned)
    seed(models, name, ON_LOAD, LOADED)
    logits = _package_logits(models, name, checkpoint)
    assert not torch.allclose(logits, checkpoint[3], atol=1e-4, rtol=1e-4)
