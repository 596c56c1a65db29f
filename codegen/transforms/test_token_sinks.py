"""TokenSinks: before/after on the llama reference, and the generated softmax against
transformers' inkling2 eager attention with per-token sinks."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.token_sinks import TokenSinks


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    TokenSinks().apply(package, projection="sink_proj")
    return package


def test_each_tokens_sinks_join_its_softmax():
    files = _package().render()
    model = files["model.py"]
    assert "F.scaled_dot_product_attention" not in model
    assert "self.wsink = nn.Linear(args.dim, self.n_heads, bias=False)" in model
    assert "sinks = self.wsink(x).transpose(1, 2).unsqueeze(-1)" in model
    assert "logits = torch.cat([scores, sinks], dim=-1).float()" in model
    assert "probs = torch.softmax(logits, dim=-1)[..., :-1].to(q.dtype)" in model
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.self_attn.sink_proj.weight": "layers.{}.attention.wsink.weight"' in (
        adapter
    )


def test_no_projection_is_refused():
    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(EditError):
        TokenSinks().apply(package, projection="other")
