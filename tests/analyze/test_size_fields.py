"""The config field each structural size is built from, read off the evaluated constructors.

* the interpreter tags an int read from a config with its field while the code passes it
  on as it is, or multiplies two such (heads * head_dim); other arithmetic, a conditional or
  min/max leaves a plain int, which names no field;
* a `ModuleList` built over `range(config.X)` is counted by X;
* `ffn.width_field`, `embedding.vocab_field`, `block.layers_field` and the attention's
  `heads_field` / `kv_heads_field` / `head_dim_field` are those tags on the analysed model
  (whisper's causal LM: its decoder's fields, not the encoder's its config's usual names
  answer); an FFN the layer holds inline is sized by its up projection, the linear whose
  output an activation carries into another outside the attention.
"""

from __future__ import annotations

import libcst as cst
import pytest

from codegen.analyze.analysis import analyze
from codegen.analyze.evaluate import ConfigInt, ConfigObj, Frame, Interp, read_field
from codegen.analyze.size_fields import head_fields
from codegen.analyze.source import Project


def _eval(tmp_path, expr: str):
    path = tmp_path / "mod.py"
    path.write_text("from torch import nn\n")
    project = Project()
    frame = Frame(project.load(str(path)))
    config = ConfigObj(None)
    config.attrs.update({"n_tokens": 512, "n_heads": 4, "head_width": 8, "bias": True})
    config.attrs["n_blocks"] = 2
    config.attribute_map = {"num_hidden_layers": "n_blocks"}
    frame.locals["config"] = config
    return Interp(project).eval(cst.parse_expression(expr), frame)


@pytest.mark.parametrize(
    ("expr", "value", "field"),
    [
        ("config.n_tokens", 512, "n_tokens"),
        ("config.num_hidden_layers", 2, "num_hidden_layers"),
        # the usual name the config answers the field by (ctrl's code reads n_layer)
        ("config.n_blocks", 2, "num_hidden_layers"),
        ("getattr(config, 'n_heads', 2)", 4, "n_heads"),
        ("[config.n_heads][0]", 4, "n_heads"),  # passed on as it is
        ("config.n_heads * 2", 8, None),
        ("config.n_heads // 1", 4, None),
        ("config.n_heads if config.bias else 3", 4, None),
        ("config.n_heads or 3", 4, None),
        ("max(config.n_heads, config.head_width)", 8, None),
        ("config.bias", True, None),  # bools are no sizes
    ],
)
def test_a_read_names_its_field_only_where_it_is_passed_as_it_is(tmp_path, expr, value, field):
    found = _eval(tmp_path, expr)
    assert found == value and read_field(found) == field


def test_a_product_of_two_reads_keeps_both_fields(tmp_path):
    value = _eval(tmp_path, "config.n_heads * config.head_width")
    assert value == 32 and value.fields == ("n_heads", "head_width")
    assert read_field(value) is None  # no one field is that size


def test_a_module_list_over_a_config_range_is_counted_by_that_field(tmp_path):
    layers = _eval(tmp_path, "nn.ModuleList([nn.Linear(1, 1) for _ in range(config.n_heads)])")
    assert len(layers.items) == 4 and layers.count_field == "n_heads"
    doubled = _eval(tmp_path, "nn.ModuleList([nn.Linear(1, 1) for _ in range(2 * config.n_heads)])")
    assert doubled.count_field is None


def test_the_head_width_no_attribute_holds_is_the_factor_q_and_k_share():
    q, k = ConfigInt(32, ("n_q", "width")), ConfigInt(16, ("n_kv", "width"))
    assert head_fields(4, 2, 8, q, k) == ("n_q", "n_kv", "width")
    heads = ConfigInt(4, ("heads",))  # a count held as it is wins
    assert head_fields(heads, 2, 8, q, k) == ("heads", "n_kv", "width")
    same = ConfigInt(32, ("n_q", "width"))  # as many kv heads: which factor is which is unknown
    assert head_fields(4, 4, 8, q, same) == (None, None, None)


def test_whisper_reads_its_decoders_fields():
    features = analyze("whisper")
    assert features.block.layers_field == "decoder_layers"
    # its FFN is held inline by the layer (fc1, fc2 beside the attention): fc1's width
    assert features.ffn.width_field == "decoder_ffn_dim"
    assert features.attention.heads_field == "decoder_attention_heads"
    # k built as wide as q by one expression (`nn.Linear(embed_dim, embed_dim)`): as many
    # kv heads as heads, whatever the config (its num_key_value_heads is the encoder's)
    assert features.attention.kv_heads_field == "decoder_attention_heads"
    assert features.embedding.vocab_field == "vocab_size"
    assert features.evidence["block.layers_field"].startswith("modeling_whisper.py:")


@pytest.mark.parametrize(
    ("model_type", "field", "width"),
    [("bert", "intermediate_size", 3072), ("roberta", "intermediate_size", 3072)]
    + [("opt", "ffn_dim", 3072), ("xglm", "ffn_dim", 4096)],
)
def test_an_ffn_the_layer_holds_inline_names_its_up_projections_width(model_type, field, width):
    """The linear whose output an activation carries into another outside the attention:
    BERT's layer traces its attention's output projection (hidden_size wide) first, OPT's
    fc1 is the layer's own attribute beside its attention."""
    ffn = analyze(model_type).ffn
    assert ffn.source == "inline"
    assert (ffn.width_field, ffn.intermediate_size) == (field, width)


def test_llama_reads_the_usual_names():
    features = analyze("llama")
    assert features.ffn.width_field == "intermediate_size"
    assert features.embedding.vocab_field == "vocab_size"
    assert features.block.layers_field == "num_hidden_layers"
    attention = features.attention
    # its config fills num_key_value_heads from num_attention_heads: the read is its own
    fields = (attention.heads_field, attention.kv_heads_field, attention.head_dim_field)
    assert fields == ("num_attention_heads", "num_key_value_heads", "head_dim")


def test_a_derived_size_names_no_field():
    assert analyze("gpt2").ffn.width_field is None  # n_inner or 4 * hidden_size
    assert analyze("mixtral").ffn.width_field is None  # the experts' width, not a dense MLP's
    assert analyze("mixtral").attention.head_dim_field is None  # head_dim or hidden // heads
