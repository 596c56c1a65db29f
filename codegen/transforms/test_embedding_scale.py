"""EmbeddingScale: gemma's sqrt(dim) and granite's config multiplier, and their detection."""

from types import SimpleNamespace

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms import embedding_scale
from codegen.transforms.edits import EditError
from codegen.transforms.embedding_scale import EmbeddingScale


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_sqrt_dim_is_rounded_to_the_model_dtype_after_the_lookup():
    package = _llama()
    EmbeddingScale().apply(package, kind="sqrt_dim")
    model = package.render()["model.py"]
    assert (
        "h = self.tok_embeddings(tokens)\n"
        "        h = h * torch.tensor(self.args.dim**0.5, dtype=h.dtype)\n"
    ) in model
    assert package.render()["args.py"] == _llama().render()["args.py"]  # dim is already there


def test_config_multiplier_becomes_a_mapped_field():
    package = _llama()
    EmbeddingScale().apply(package, kind="config", field="embedding_multiplier")
    files = package.render()
    assert "h = self.tok_embeddings(tokens) * self.args.embedding_multiplier\n" in files["model.py"]
    assert (
        "    embedding_multiplier: float = 1.0  # token embeddings are multiplied by this\n"
        "    tie_word_embeddings: bool = False\n"
    ) in files["args.py"]
    assert (
        "embedding_multiplier=hf_config.embedding_multiplier,\n"
        "            tie_word_embeddings=hf_config.tie_word_embeddings,"
    ) in files["args.py"]


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        EmbeddingScale().apply(_llama(), kind="log")


def _features(tmp_path, source: str, line: int):
    path = tmp_path / "modeling_x.py"
    path.write_text(source)
    return SimpleNamespace(
        source=SimpleNamespace(modeling=str(path)),
        evidence={"embedding.scale": f"modeling_x.py:{line} (x 12)"},
    )


def test_detects_granite_style_multiplier(tmp_path):
    source = (
        "class M:\n"
        "    def __init__(self, config):\n"
        "        self.embedding_multiplier = config.embedding_multiplier\n"
        "    def forward(self, inputs_embeds):\n"
        "        inputs_embeds = inputs_embeds * self.embedding_multiplier\n"
    )
    assert embedding_scale.detect(_features(tmp_path, source, 5)) == (
        "config",
        "embedding_multiplier",
    )


def test_detects_gemma_style_sqrt(tmp_path):
    source = (
        "class E:\n"
        "    def forward(self, ids):\n"
        "        return super().forward(ids) * self.embed_scale.to(self.weight.dtype)\n"
        "x = E(embed_scale=self.config.hidden_size**0.5)\n"
    )
    assert embedding_scale.detect(_features(tmp_path, source, 3)) == ("sqrt_dim", None)


def test_without_source_detection_fails_loudly():
    with pytest.raises(EditError):
        EmbeddingScale().apply(_llama())


def test_sqrt_dim_float_is_not_rounded():
    package = _llama()
    EmbeddingScale().apply(package, kind="sqrt_dim_float")
    model = package.render()["model.py"]
    assert "h = self.tok_embeddings(tokens)\n        h = h * self.args.dim**0.5\n" in model


def test_detects_biogpt_style_math_sqrt(tmp_path):
    source = (
        "class E:\n"
        "    def forward(self, ids):\n"
        "        return super().forward(ids) * self.embed_scale\n"
        "scale = math.sqrt(config.hidden_size) if config.scale_embedding else 1.0\n"
    )
    assert embedding_scale.detect(_features(tmp_path, source, 3)) == ("sqrt_dim_float", None)


def test_detects_a_scaled_embedding_module_built_with_a_config_field(tmp_path):
    """MiniCPM3's ScaledWordEmbedding multiplies by its own buffer, built from scale_emb."""
    source = (
        "class E:\n"
        "    def forward(self, ids):\n"
        "        return super().forward(ids) * self.embed_scale.to(self.weight.dtype)\n"
        "x = E(3, 4, 0, embed_scale=config.scale_emb)\n"
    )
    assert embedding_scale.detect(_features(tmp_path, source, 3)) == ("config", "scale_emb")


def test_detects_ctrl_style_sqrt_of_a_width_attribute(tmp_path):
    """CTRL: `inputs_embeds *= np.sqrt(self.d_model_size)`, the attribute set from n_embd."""
    source = (
        "class M:\n"
        "    def __init__(self, config):\n"
        "        self.d_model_size = config.n_embd\n"
        "    def forward(self, inputs_embeds):\n"
        "        inputs_embeds *= np.sqrt(self.d_model_size)\n"
    )
    assert embedding_scale.detect(_features(tmp_path, source, 5)) == ("sqrt_dim_float", None)


def test_sqrt_of_an_attribute_not_set_from_the_width_is_not_the_width(tmp_path):
    source = (
        "class M:\n"
        "    def __init__(self, config):\n"
        "        self.d_model_size = config.n_head\n"
        "    def forward(self, inputs_embeds):\n"
        "        inputs_embeds *= np.sqrt(self.d_model_size)\n"
    )
    with pytest.raises(EditError):
        embedding_scale.detect(_features(tmp_path, source, 5))


def test_a_width_named_only_in_a_comment_is_no_evidence(tmp_path):
    """The sqrt of the width is looked for in the code, not in its comments: a scale read
    from no config field is refused, not taken for BioGPT's sqrt(dim)."""
    source = (
        "class M:\n"
        "    def forward(self, inputs_embeds):\n"
        "        # unlike BioGPT, not math.sqrt(config.hidden_size)\n"
        "        return inputs_embeds * self.scale_factor\n"
    )
    with pytest.raises(EditError, match="cannot tell how the embeddings are scaled"):
        embedding_scale.detect(_features(tmp_path, source, 4))


def test_the_multiplier_is_read_on_the_evidence_line_whatever_its_spacing(tmp_path):
    """Granite's multiplier read through `self.config`, the product split over lines by
    its parentheses: the evidence line holds the right operand."""
    source = (
        "class M:\n"
        "    def forward(self, inputs_embeds):\n"
        "        inputs_embeds = (\n"
        "            inputs_embeds  *self.config.embedding_multiplier\n"
        "        )\n"
    )
    assert embedding_scale.detect(_features(tmp_path, source, 4)) == (
        "config",
        "embedding_multiplier",
    )


def test_a_width_attribute_read_in_a_longer_expression_counts(tmp_path):
    """CTRL-like: `self.width = config.n_embd * 1` still starts from the width field."""
    source = (
        "class M:\n"
        "    def __init__(self, config):\n"
        "        self.width = config.n_embd if config.n_embd else 1\n"
        "    def forward(self, inputs_embeds):\n"
        "        inputs_embeds *= np.sqrt(self.width)\n"
    )
    assert embedding_scale.detect(_features(tmp_path, source, 5)) == ("sqrt_dim_float", None)
