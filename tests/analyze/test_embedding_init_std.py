"""`embedding.init_std`: the std `_init_weights` gives `nn.Embedding`, restated over the
config through the method's locals; a plain `initializer_range` is no feature."""

from __future__ import annotations

from analyze_helpers import rename_model

from codegen.analyze.analysis import analyze

YOUTU = (
    'getattr(hf_config, "embedding_initializer_range", '
    '2 * getattr(hf_config, "initializer_range", 0.02))'
)


def test_youtu_and_plain_models():
    features = analyze("youtu")
    assert features.embedding.init_std == YOUTU
    where = features.evidence["embedding.init_std"].split(" ", 1)[0]
    line = int(where.rsplit(":", 1)[1])
    source = open(features.source.modeling, encoding="utf-8").read().splitlines()
    assert "init.normal_(module.weight, mean=0.0, std=embed_std)" in source[line - 1]
    for plain in ("llama", "deepseek_v3", "gpt2"):
        assert analyze(plain).embedding.init_std is None


def test_renamed_copy_with_renamed_locals(tmp_path):
    modeling, _ = rename_model("youtu", "zorblax", str(tmp_path))
    text = open(modeling, encoding="utf-8").read()
    assert "embed_std" in text
    text = text.replace("embed_std", "table_sigma")
    open(modeling, "w", encoding="utf-8").write(text)
    assert analyze(modeling).embedding.init_std == YOUTU
