"""AltUpStreams: before/after on the qwen3 reference. The block takes the streams, runs on the
active stream's prediction and returns the correction; the model expands the embedding into
the streams before the layers and merges them before the final norm; the adapter maps HF's
keys. The AltUp class it writes computes HF gemma3n's predict and correct."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms._attention_edits import find_method
from codegen.transforms.altup import ALTUP, AltUpStreams, module_keys
from codegen.transforms.edits import code_of

FOUND = {
    "module": "altup",
    "streams": "altup_num_inputs",
    "active": "altup_active_idx",
    "clip": "altup_coef_clip",
    "params": {
        "output_scale": "correct_output_scale",
        "correction": "correction_coefs",
        "prediction": "prediction_coefs",
        "router": "modality_router",
        "router_norm": "router_norm",
    },
    "embed": "model.altup_projections",
    "unembed": "model.altup_unembed_projections",
}


def _body(package, cls: str, method: str) -> list[str]:
    function = find_method(package.module("model.py"), cls, method)
    return [code_of(s).strip() for s in function.body.body]


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    AltUpStreams().apply(package, altup=FOUND)
    return package


def test_before_the_reference_has_one_stream():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    assert "altup" not in package.render()["model.py"]
    assert _body(package, "TransformerBlock", "forward")[0].startswith("h = x + ")


def test_block_runs_on_the_active_prediction_and_returns_the_correction():
    package = _package()
    body = _body(package, "TransformerBlock", "forward")
    assert body[:2] == [
        "predictions = self.altup.predict(streams)",
        "x = predictions[self.altup.active]  # the layer runs on the active stream's prediction",
    ]
    assert body[-1].startswith("return self.altup.correct(predictions, h + ")
    assert "self.altup = AltUp(args)" in _body(package, "TransformerBlock", "__init__")


def test_model_expands_before_the_layers_and_merges_before_the_norm():
    body = _body(_package(), "Model", "forward")
    expand = body.index("streams = self.expand_streams(h)")
    assert body[expand + 1].startswith("for layer in self.layers:\n    streams = layer(streams,")
    # merged into one stream, then the streams are deleted: the last layer's streams (altup_streams
    # hidden states) are not held beside the logits while the head computes them
    assert body[expand + 2 : expand + 4] == [
        "h = self.merge_streams(streams)",
        "del streams  # not held while the head computes the logits",
    ]
    assert body[expand + 4].startswith("h = self.norm(h)")


def test_adapter_maps_hf_keys_and_args_read_the_fields():
    rendered = _package().render()
    adapter = rendered["state_dict_adapter.py"]
    for hf, house in [
        ("model.layers.{}.altup.correct_output_scale", "layers.{}.altup.output_scale"),
        ("model.layers.{}.altup.prediction_coefs.weight", "layers.{}.altup.prediction.weight"),
        ("model.altup_projections.{}.weight", "altup_in.{}.weight"),
        ("model.altup_unembed_projections.{}.weight", "altup_out.{}.weight"),
    ]:
        assert f'"{hf}": "{house}"' in adapter
    for kwarg in (
        "altup_streams=hf_config.altup_num_inputs",
        "altup_active=hf_config.altup_active_idx",
    ):
        assert kwarg in rendered["args.py"]


@pytest.mark.parametrize("active", [0, 2])
def test_altup_module_computes_hf_gemma3n_predict_and_correct(active):
    from transformers import Gemma3nTextConfig
    from transformers.models.gemma3n.modeling_gemma3n import Gemma3nRMSNorm, Gemma3nTextAltUp

    config = Gemma3nTextConfig(hidden_size=96, altup_active_idx=active, altup_num_inputs=4)
    namespace = {"torch": torch, "nn": nn, "F": F, "ModelArgs": object, "Norm": Gemma3nRMSNorm}
    exec(ALTUP.replace("{norm}", "Norm(args.dim, eps=1e-6)"), namespace)  # noqa: S102
    args = type("Args", (), {"dim": 96, "altup_streams": 4, "altup_active": active})()
    args.altup_coef_clip = 120.0
    torch.manual_seed(0)
    hf = Gemma3nTextAltUp(config).eval()
    ours = namespace["AltUp"](args).eval()
    for p in hf.parameters():
        nn.init.normal_(p)
    hf_names = {house: hf for hf, house in module_keys(FOUND["params"]).items()}
    ours.load_state_dict({key: hf.state_dict()[hf_names[key]] for key in ours.state_dict()})
    streams, out = torch.randn(4, 2, 5, 96), torch.randn(2, 5, 96)
    with torch.no_grad():
        torch.testing.assert_close(ours.predict(streams), hf.predict(streams))
        torch.testing.assert_close(ours.correct(streams, out), hf.correct(streams, out))
