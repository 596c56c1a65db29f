"""ResidualScale: each residual add of the block scales its sublayer's output."""

from types import SimpleNamespace

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms import residual_scale
from codegen.transforms.edits import EditError
from codegen.transforms.residual_scale import ResidualScale


def test_both_residual_adds_are_scaled():
    package = SourcePackage.from_directory(references_dir() / "llama")
    ResidualScale().apply(package, field="residual_multiplier")
    files = package.render()
    model = files["model.py"]
    assert (
        "        super().__init__()\n"
        "        self.residual_multiplier = args.residual_multiplier\n"
        "        self.attention_norm = RMSNorm(args.dim, args.norm_eps)\n"
    ) in model
    assert (
        "h = x + self.attention(self.attention_norm(x), rope) * self.residual_multiplier" in model
    )
    assert "return h + self.feed_forward(self.ffn_norm(h)) * self.residual_multiplier" in model
    assert "residual_multiplier=hf_config.residual_multiplier," in files["args.py"]


def test_moe_block_call_through_a_local_is_scaled_too():
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    ResidualScale().apply(package, field="residual_multiplier")
    assert (
        "return h + ffn(self.ffn_norm(h)) * self.residual_multiplier"
        in (package.render()["model.py"])
    )


def test_detects_the_field(tmp_path):
    path = tmp_path / "modeling_x.py"
    path.write_text(
        "self.residual_multiplier = config.residual_multiplier\n"
        "hidden_states = residual + hidden_states * self.residual_multiplier\n"
    )
    features = SimpleNamespace(source=SimpleNamespace(modeling=str(path)))
    assert residual_scale.detect(features) == (
        "residual_multiplier",
        "hf_config.residual_multiplier",
    )


def test_detects_an_expression_over_config_fields(tmp_path):
    """MiniCPM3: the multiplier is computed from two fields; reading only the first one
    would drop the / sqrt(layers)."""
    path = tmp_path / "modeling_x.py"
    path.write_text(
        "self.residual_scale = config.scale_depth / math.sqrt(config.num_hidden_layers)\n"
        "hidden_states = residual + hidden_states * self.residual_scale\n"
    )
    features = SimpleNamespace(source=SimpleNamespace(modeling=str(path)))
    assert residual_scale.detect(features) == (
        "residual_scale",
        "hf_config.scale_depth / sqrt(hf_config.num_hidden_layers)",
    )
    package = SourcePackage.from_directory(references_dir() / "llama")
    ResidualScale().apply(package, features)
    args = package.render()["args.py"]
    assert "from math import sqrt" in args
    assert "residual_scale=hf_config.scale_depth / sqrt(hf_config.num_hidden_layers)" in args


def test_depth_scaled_sum_scales_both_operands_by_the_layer_index():
    """Each sublayer's output is term k of the residual sum (k = 2 * layer + 2 for the
    attention, + 1 for the FFN): it enters times 1/sqrt(k) and the stream times sqrt((k-1)/k)."""
    package = SourcePackage.from_directory(references_dir() / "llama")
    ResidualScale().apply(package, form="depth_scaled")
    model = package.render()["model.py"]
    assert "from math import sqrt" in model
    assert "def __init__(self, args: ModelArgs, layer_id: int):" in model
    assert "TransformerBlock(args, i) for i in range(args.n_layers)" in model
    assert "        k = 2 * layer_id + 2  # the attention's term of the residual sum" in model
    assert (
        "self.attention_scale, self.attention_stream_scale = 1 / sqrt(k), sqrt((k - 1) / k)"
        in model
    )
    assert "self.ffn_scale, self.ffn_stream_scale = 1 / sqrt(k + 1), sqrt(k / (k + 1))" in model
    assert (
        "h = self.attention(self.attention_norm(x), rope) * self.attention_scale"
        " + x * self.attention_stream_scale" in model
    )
    assert (
        "return self.feed_forward(self.ffn_norm(h)) * self.ffn_scale + h * self.ffn_stream_scale"
        in model
    )
    assert "residual_multiplier" not in package.render()["args.py"]


def test_depth_scaled_moe_block_through_a_local():
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    ResidualScale().apply(package, form="depth_scaled")
    model = package.render()["model.py"]
    assert "return ffn(self.ffn_norm(h)) * self.ffn_scale + h * self.ffn_stream_scale" in model


def test_an_unknown_form_is_refused():
    import pytest

    from codegen.transforms.edits import EditError

    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(EditError, match="scaled_stream"):
        ResidualScale().apply(package, form="scaled_stream")  # neither named form


def test_learned_stream_weights_the_stream_before_each_add():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    ResidualScale().apply(
        package, form="learned_stream", weights=("input_residual", "post_attention_residual")
    )
    files = package.render()
    model = files["model.py"]
    assert (
        "        super().__init__()\n"
        "        self.attention_residual = nn.Parameter(torch.ones(args.dim))"
    ) in model
    assert (
        "h = self.attention_residual * x + self.attention(self.attention_norm(x), rope, mask)"
        in model
    )
    assert "return self.ffn_residual * h + self.feed_forward(self.ffn_norm(h))" in model
    assert "nn.init.ones_(self.attention_residual)" in model
    adapter = files["state_dict_adapter.py"]
    assert (
        '"model.layers.{}.input_residual": "layers.{}.attention_residual"' in adapter
        and '"model.layers.{}.post_attention_residual": "layers.{}.ffn_residual"' in adapter
    )


def test_learned_stream_moe_block_through_a_local():
    package = SourcePackage.from_directory(references_dir() / "qwen3_moe")
    ResidualScale().apply(package, form="learned_stream", weights=("a", "b"))
    assert "return self.ffn_residual * h + ffn(self.ffn_norm(h))" in package.render()["model.py"]


def _detect(tmp_path, source: str):
    path = tmp_path / "modeling_x.py"
    path.write_text(source)
    return residual_scale.detect(SimpleNamespace(source=SimpleNamespace(modeling=str(path))))


def test_an_expression_wrapped_over_lines_with_a_comment_is_read_whole(tmp_path):
    """The multiplier's assignment is read as a node: wrapped over lines (as ruff wraps a
    long one) and commented, it is the same expression, comment left out."""
    source = (
        "class Layer:\n"
        "    def __init__(self, config):\n"
        "        self.residual_scale = (  # MiniCPM's depth scaling\n"
        "            config.scale_depth / math.sqrt(config.num_hidden_layers)\n"
        "        )\n"
        "    def forward(self, residual, hidden_states):\n"
        "        return residual + hidden_states * self.residual_scale\n"
    )
    assert _detect(tmp_path, source) == (
        "residual_scale",
        "hf_config.scale_depth / sqrt(hf_config.num_hidden_layers)",
    )


def test_a_scaled_add_only_in_a_comment_or_docstring_is_no_evidence(tmp_path):
    source = (
        '"""Unlike granite, no `residual + hidden_states * self.residual_multiplier`."""\n'
        "class Layer:\n"
        "    def __init__(self, config):\n"
        "        self.residual_multiplier = config.residual_multiplier\n"
        "    def forward(self, residual, hidden_states):\n"
        "        # residual + hidden_states * self.residual_multiplier\n"
        "        return residual + hidden_states\n"
    )
    with pytest.raises(EditError, match="no `residual \\+ hidden_states"):
        _detect(tmp_path, source)


def test_a_multiplier_over_other_things_than_the_config_is_refused(tmp_path):
    source = (
        "class Layer:\n"
        "    def __init__(self, config, depth):\n"
        "        self.residual_scale = 1 / depth\n"
        "    def forward(self, residual, hidden_states):\n"
        "        return residual + hidden_states * self.residual_scale\n"
    )
    with pytest.raises(EditError):
        _detect(tmp_path, source)
