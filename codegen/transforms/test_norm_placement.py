"""SetNormPlacement: before/after for post, sandwich and parallel blocks."""

import re
from types import SimpleNamespace

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.norm_placement import SetNormPlacement
from codegen.transforms.testing import package_of

BLOCK = """
class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args.dim, args.hidden_dim)

    def forward(self, x, rope, mask):
        h = x + self.attention(self.attention_norm(x), rope, mask)
        return h + self.feed_forward(self.ffn_norm(h))
"""

ADAPTER = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
        "model.layers.{}.input_layernorm.weight": "layers.{}.attention_norm.weight",
        "model.layers.{}.input_layernorm.bias": "layers.{}.attention_norm.bias",
        "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
        "model.layers.{}.post_attention_layernorm.bias": "layers.{}.ffn_norm.bias",
        "model.norm.weight": "norm.weight",
    }
"""

POST = '''
class TransformerBlock(nn.Module):
    """Post-norm block: each sublayer's output is normalised before its residual add."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention = Attention(args)
        self.post_attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.feed_forward = FeedForward(args.dim, args.hidden_dim)
        self.post_ffn_norm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x, rope, mask):
        h = x + self.post_attention_norm(self.attention(x, rope, mask))
        return h + self.post_ffn_norm(self.feed_forward(h))
'''

POST_ADAPTER = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
        "model.layers.{}.post_attention_layernorm.weight": "layers.{}.post_attention_norm.weight",
        "model.layers.{}.post_attention_layernorm.bias": "layers.{}.post_attention_norm.bias",
        "model.layers.{}.post_feedforward_layernorm.weight": "layers.{}.post_ffn_norm.weight",
        "model.layers.{}.post_feedforward_layernorm.bias": "layers.{}.post_ffn_norm.bias",
        "model.norm.weight": "norm.weight",
    }
"""

SANDWICH_FORWARD = """
    def forward(self, x, rope, mask):
        h = x + self.post_attention_norm(self.attention(self.attention_norm(x), rope, mask))
        return h + self.post_ffn_norm(self.feed_forward(self.ffn_norm(h)))
"""

PARALLEL = '''
class TransformerBlock(nn.Module):
    """Parallel block: attention and feed-forward both read normed x and add to x."""

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args.dim, args.hidden_dim)

    def forward(self, x, rope, mask):
        normed = self.attention_norm(x)
        h = x + self.attention(normed, rope, mask)
        return h + self.feed_forward(normed)
'''


def _package():
    return package_of({"model.py": BLOCK, "state_dict_adapter.py": ADAPTER})


def _rows(adapter: str) -> dict[str, str]:
    """Layer rows of an adapter's source, without the `model.layers.{}.` prefixes."""
    found = re.findall(r'"model\.layers\.\{\}\.([\w.]+)": "layers\.\{\}\.([\w.]+)"', adapter)
    return dict(found)


def _features(*layer_keys):
    return SimpleNamespace(state_dict=SimpleNamespace(checkpoint_layer_keys=layer_keys))


def test_post_norm_moves_both_norms_after_their_sublayers():
    package = _package()
    SetNormPlacement().apply(package, placement="post")
    assert package.render() == {"model.py": POST, "state_dict_adapter.py": POST_ADAPTER}


def test_sandwich_has_four_norms_gemma2_names_by_default():
    package = _package()
    SetNormPlacement().apply(package, placement="sandwich")
    files = package.render()
    assert SANDWICH_FORWARD in files["model.py"]
    init = files["model.py"].split("def forward")[0]
    order = ["attention_norm =", "attention =", "post_attention_norm", "ffn_norm =", "feed_forward"]
    assert [init.index(f"self.{name}") for name in order] == sorted(
        init.index(f"self.{name}") for name in order
    )
    adapter = files["state_dict_adapter.py"]
    for hf, house in [
        ("input_layernorm", "attention_norm"),
        ("post_attention_layernorm", "post_attention_norm"),
        ("pre_feedforward_layernorm", "ffn_norm"),
        ("post_feedforward_layernorm", "post_ffn_norm"),
    ]:
        for p in ("weight", "bias"):
            assert f'"model.layers.{{}}.{hf}.{p}": "layers.{{}}.{house}.{p}"' in adapter


def test_sandwich_picks_glm4_names_from_the_checkpoint_keys():
    package = _package()
    features = _features(
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
        "post_self_attn_layernorm.weight",
        "post_mlp_layernorm.weight",
    )
    SetNormPlacement().apply(package, features, placement="sandwich")
    rows = _rows(package.render()["state_dict_adapter.py"])
    assert rows["post_attention_layernorm.weight"] == "ffn_norm.weight"
    assert rows["post_self_attn_layernorm.weight"] == "post_attention_norm.weight"
    assert rows["post_mlp_layernorm.weight"] == "post_ffn_norm.weight"


def test_sandwich_picks_mlp_named_norms_from_the_checkpoint_keys():
    package = _package()
    features = _features(
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
        "pre_mlp_layernorm.weight",
        "post_mlp_layernorm.weight",
    )
    SetNormPlacement().apply(package, features, placement="sandwich")
    rows = _rows(package.render()["state_dict_adapter.py"])
    assert rows["post_attention_layernorm.weight"] == "post_attention_norm.weight"
    assert rows["pre_mlp_layernorm.weight"] == "ffn_norm.weight"
    assert rows["post_mlp_layernorm.weight"] == "post_ffn_norm.weight"


def test_sandwich_picks_numbered_post_norm_names_from_the_checkpoint_keys():
    package = _package()
    features = _features(
        "input_layernorm.weight",
        "post_attention_layernorm.weight",
        "post_norm1.weight",
        "post_norm2.weight",
    )
    SetNormPlacement().apply(package, features, placement="sandwich")
    rows = _rows(package.render()["state_dict_adapter.py"])
    assert rows["input_layernorm.weight"] == "attention_norm.weight"
    assert rows["post_norm1.weight"] == "post_attention_norm.weight"
    assert rows["post_attention_layernorm.weight"] == "ffn_norm.weight"
    assert rows["post_norm2.weight"] == "post_ffn_norm.weight"


def test_sandwich_names_come_from_where_the_analysis_saw_each_norm():
    """kolibri1's checkpoint renames its post norms (post_attn_norm, post_ffn_norm): no
    table scheme holds those names, the analysed positions do."""
    package = _package()
    keys = ("input_layernorm.weight", "post_attention_layernorm.weight")
    keys += ("post_attn_norm.weight", "post_ffn_norm.weight")
    names = (
        ("attention_norm", "input_layernorm"),
        ("post_attention_norm", "post_attn_norm"),
        ("ffn_norm", "post_attention_layernorm"),
        ("post_ffn_norm", "post_ffn_norm"),
    )
    features = _features(*keys)
    features.norm = SimpleNamespace(block_names=names)
    SetNormPlacement().apply(package, features, placement="sandwich")
    rows = _rows(package.render()["state_dict_adapter.py"])
    assert rows["post_attn_norm.weight"] == "post_attention_norm.weight"
    assert rows["post_attention_layernorm.weight"] == "ffn_norm.weight"
    assert rows["post_ffn_norm.weight"] == "post_ffn_norm.weight"
    # names the checkpoint does not hold are no scheme: the table's default is used
    package = _package()
    features = _features(*keys[:2])
    features.norm = SimpleNamespace(block_names=names)
    SetNormPlacement().apply(package, features, placement="sandwich")
    rows = _rows(package.render()["state_dict_adapter.py"])
    assert rows["post_attention_layernorm.weight"] == "post_attention_norm.weight"


def test_parallel_with_one_analysed_norm_for_both_sublayers_shares_it():
    package = _package()
    features = _features("input_layernorm.weight", "post_attention_layernorm.weight")
    features.norm = SimpleNamespace(
        block_names=(("attention_norm", "input_layernorm"), ("ffn_norm", "input_layernorm"))
    )
    SetNormPlacement().apply(package, features, placement="parallel")
    assert package.render()["model.py"] == PARALLEL


def test_parallel_shares_one_input_norm():
    package = _package()
    SetNormPlacement().apply(package, placement="parallel")
    files = package.render()
    assert files["model.py"] == PARALLEL
    adapter = files["state_dict_adapter.py"]
    assert "post_attention_layernorm" not in adapter
    assert '"model.layers.{}.input_layernorm.bias": "layers.{}.attention_norm.bias"' in adapter


def test_parallel_with_two_norms_when_the_checkpoint_has_two():
    package = _package()
    features = _features("input_layernorm.weight", "post_attention_layernorm.weight")
    SetNormPlacement().apply(package, features, placement="parallel")
    files = package.render()
    model = files["model.py"]
    assert "        h = x + self.attention(self.attention_norm(x), rope, mask)\n" in model
    assert "        return h + self.feed_forward(self.ffn_norm(x))\n" in model
    assert files["state_dict_adapter.py"] == ADAPTER


def test_bad_placements_are_refused():
    with pytest.raises(ValueError):
        SetNormPlacement().apply(_package(), placement="pre")
    with pytest.raises(ValueError):
        SetNormPlacement().apply(_package(), placement="post", hf_names={"ffn_norm": "x"})
    package = _package()
    SetNormPlacement().apply(package, placement="post")
    with pytest.raises(EditError):
        SetNormPlacement().apply(package, placement="sandwich")


def test_on_the_deepseek_v3_reference_the_moe_branch_is_wrapped_too():
    package = SourcePackage.from_directory(references_dir() / "deepseek_v3")
    SetNormPlacement().apply(package, placement="sandwich")
    model = package.render()["model.py"]
    assert "return h + self.post_ffn_norm(ffn(self.ffn_norm(h)))" in model
    init = model.split("class TransformerBlock")[1].split("def forward")[0]
    assert init.rstrip().endswith("self.post_ffn_norm = RMSNorm(args.dim, args.norm_eps)")


def test_post_residual_norms_each_residual_sum():
    """Post-LN (GPT-1): the sublayers read their input unnormed and each residual sum goes
    through the norm after it; the adapter maps ln_1 / ln_2 by default."""
    package = _package()
    before = package.render()["model.py"]
    assert "h = x + self.attention(self.attention_norm(x), rope, mask)" in before
    SetNormPlacement().apply(package, placement="post_residual")
    files = package.render()
    model = files["model.py"]
    assert "h = self.post_attention_norm(x + self.attention(x, rope, mask))" in model
    assert "return self.post_ffn_norm(h + self.feed_forward(h))" in model
    assert "self.attention_norm" not in model and "self.ffn_norm" not in model
    assert "Post-LN block" in model
    rows = _rows(files["state_dict_adapter.py"])
    assert rows == {
        **{k: v for k, v in rows.items() if "norm" not in v},
        "ln_1.weight": "post_attention_norm.weight",
        "ln_1.bias": "post_attention_norm.bias",
        "ln_2.weight": "post_ffn_norm.weight",
        "ln_2.bias": "post_ffn_norm.bias",
    }
