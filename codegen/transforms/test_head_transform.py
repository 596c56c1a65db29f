"""HeadTransform: BERT's prediction head (dense, activation, norm) before the vocabulary
projection, its keys and the bias stored under another key."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.head_bias import SetHeadBias
from codegen.transforms.head_transform import HeadTransform

P = "cls.predictions"


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def _bert_head(**kwargs) -> SourcePackage:
    package = _llama()
    SetHeadBias().apply(package)
    params = dict(
        dense=f"{P}.transform.dense",
        norm=f"{P}.transform.LayerNorm",
        projection=f"{P}.decoder",
        activation="gelu",
        bias_key=f"{P}.bias",
    )
    HeadTransform().apply(package, **{**params, **kwargs})
    return package


def test_the_head_input_goes_through_dense_activation_norm():
    model = _bert_head().render()["model.py"]
    assert "return self.output(self.head_norm(F.gelu(self.head_dense(h))))" in model
    assert "self.head_dense = nn.Linear(args.dim, args.dim)" in model
    assert "self.head_norm = RMSNorm(args.dim, args.norm_eps)" in model
    assert model.index("self.head_norm =") < model.index("self.output =")


def test_keys_point_at_the_prediction_head_and_the_shared_bias():
    files = _bert_head().render()
    adapter = files["state_dict_adapter.py"]
    for hf, house in (
        ("decoder.weight", "output.weight"),
        ("bias", "output.bias"),
        ("transform.dense.weight", "head_dense.weight"),
        ("transform.dense.bias", "head_dense.bias"),
        ("transform.LayerNorm.weight", "head_norm.weight"),
    ):
        assert f'"{P}.{hf}": "{house}"' in adapter
    assert '"lm_head.weight"' not in adapter
    # the bias is shared with decoder.bias only when tied: untied checkpoints are refused
    assert '"tie_word_embeddings": True' in files["args.py"]


def test_a_bias_of_the_projection_itself_leaves_tying_free():
    files = _bert_head(bias_key=f"{P}.decoder.bias", dense_bias=False).render()
    assert '"tie_word_embeddings": True' not in files["args.py"]
    assert f'"{P}.decoder.bias": "output.bias"' in files["state_dict_adapter.py"]
    assert "nn.Linear(args.dim, args.dim, bias=False)" in files["model.py"]
    assert "head_dense.bias" not in files["state_dict_adapter.py"]


def test_the_activation_is_the_heads_own():
    model = _bert_head(activation="gelu_new").render()["model.py"]
    assert 'F.gelu(self.head_dense(h), approximate="tanh")' in model


def test_bad_parameters_are_refused():
    with pytest.raises(EditError):
        _bert_head(activation="no_such_activation")
    with pytest.raises(EditError):
        _bert_head(dense="")


def test_a_head_of_its_own_width():
    """RemBERT: dense hidden -> output_embedding_size, the norm and the projection at it."""
    files = _bert_head(width="output_embedding_size", bias_key=f"{P}.decoder.bias").render()
    model = files["model.py"]
    assert "self.head_dense = nn.Linear(args.dim, args.head_width)" in model
    assert "self.head_norm = RMSNorm(args.head_width, args.norm_eps)" in model
    assert "self.output = nn.Linear(args.head_width, args.vocab_size" in model
    assert "head_width=hf_config.output_embedding_size," in files["args.py"]


def test_the_field_the_activation_is_looked_up_by_is_pinned():
    """ModernBERT-decoder: `ACT2FN[config.classifier_activation]` hard-coded as gelu, so a
    config naming another activation is refused, not run with gelu."""
    before = _bert_head().render()["args.py"]
    assert "classifier_activation" not in before
    after = _bert_head(activation_field="classifier_activation").render()["args.py"]
    assert '"classifier_activation": "gelu"' in after
    assert '"hidden_act": "silu"' in after  # the FFN's own pin is left alone


def test_a_field_already_pinned_is_set_not_listed_twice():
    """BERT's head reads hidden_act, the field the FFN's pin already lists."""
    args = _bert_head(activation="gelu_new", activation_field="hidden_act").render()["args.py"]
    assert args.count('"hidden_act"') == 1
    assert '"hidden_act": "gelu_new"' in args
