"""AttentionResiduals: before/after on the qwen3_moe reference: the block carries the block
states and reads each sublayer's input through a DepthAttention (the attention's from the
second layer on), the model starts with none and reads them before the final norm; the
adapter maps the HF queries; another form is refused. With three queries on the full
layers (on the qwen3 reference windowed by type, as `log_scaled_layers` and
`layer_kv_inputs` then leave it), those layers build a DepthQueries and hand its outputs
through the query, key and value norms."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms import _attention_edits as attention_edits
from codegen.transforms._attention_edits import find_method
from codegen.transforms.attention_residuals import AttentionResiduals
from codegen.transforms.edits import EditError, code_of

FACT = {
    "layer": {
        "mlp_input": {"queries": [1], "layers": [0, 1, 2]},
        "attention_input": {"queries": [1], "layers": [1, 2]},
    },
    "final": "final_input",
    "boundary": {"field": "n_layers_per_attn_res_block", "flag": "is_block_boundary"},
    "eps": 1e-6,
}


def _package() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "qwen3_moe")


def test_the_block_and_the_model_carry_the_block_states():
    package = _package()
    AttentionResiduals().apply(package, residuals=FACT)
    module = package.module("model.py")
    block = code_of(find_method(module, "TransformerBlock", "forward"))
    assert "self.attention_norm(attention_in).to(dtype)" in block
    assert "self.ffn_norm(self.ffn_input(blocks, h)).to(dtype)" in block
    assert "blocks = torch.cat([blocks, x.unsqueeze(-2)], dim=-2)" in block
    assert "h = x.float() + h" in block and "return (h + out).to(dtype), blocks" in block
    init = code_of(find_method(module, "TransformerBlock", "__init__"))
    assert "self.starts_block = layer_id % args.attn_res_block == 0" in init
    model = code_of(find_method(module, "Model", "forward"))
    assert "h, blocks = layer(h, blocks," in model
    assert "h = self.final_input(blocks, h)" in model
    files = package.render()
    assert "attn_res_block=hf_config.n_layers_per_attn_res_block" in files["args.py"]
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.attention_input.query": "layers.{}.attention_input.query"' in adapter
    assert '"model.final_input.query": "final_input.query"' in adapter
    compile(files["model.py"], "model.py", "exec")


def test_depth_attention_calls_sdpa_and_the_token_attention_can_still_be_written_out():
    """The depth attention is one SDPA call over the depth axis (the kernel HF's block
    residual calls); it does not make the token attention read as fused-or-explicit: the
    attention is still fused, and once written out it reads as explicit."""
    package = _package()
    AttentionResiduals().apply(package, residuals=FACT)
    depth = code_of(find_method(package.module("model.py"), "DepthAttention", "forward"))
    assert "F.scaled_dot_product_attention(query, states, states, scale=scale)" in depth
    assert not attention_edits.attention_is_explicit(package)
    attention_edits.make_attention_explicit(package)
    assert attention_edits.attention_is_explicit(package)
    forward = code_of(find_method(package.module("model.py"), "Attention", "forward"))
    assert "scaled_dot_product_attention" not in forward


def test_several_queries_are_refused():
    fact = {
        **FACT,
        "layer": {**FACT["layer"], "attention_input": {"queries": [1, 3], "layers": [1, 2]}},
    }
    with pytest.raises(EditError):
        AttentionResiduals().apply(_package(), residuals=fact)


WIDE = {
    **FACT,
    "layer": {
        **FACT["layer"],
        "attention_input": {
            "queries": [1, 3],
            "layers": [1, 2],
            "wide": [2],
            "reads": (
                ("q_input_layernorm", "hidden_states"),
                ("k_input_layernorm", "key_hidden_states"),
                ("v_input_layernorm", "value_hidden_states"),
            ),
        },
    },
}


def test_three_queries_reach_the_full_layers_query_key_and_value_norms():
    from codegen.transforms.layer_kv_inputs import LayerKvInputs
    from codegen.transforms.log_scaled_layers import LogScaledLayers
    from codegen.transforms.test_layer_kv_inputs import INPUTS
    from codegen.transforms.test_log_scaled_layers import FOUND, _before

    package = _before()
    AttentionResiduals().apply(package, residuals=WIDE)
    LogScaledLayers().apply(package, log_scaling=FOUND)
    LayerKvInputs().apply(package, inputs=INPUTS, residuals=WIDE)
    module = package.module("model.py")
    init = code_of(find_method(module, "TransformerBlock", "__init__"))
    assert "self.attention_input = DepthQueries(args.dim, args.attn_res_eps, 3)" in init
    block = code_of(find_method(module, "TransformerBlock", "forward"))
    assert "attention_in = x if self.sliding else (x, x, x)" in block
    assert "self.attention(self.attention_norm(attention_in).to(dtype), mask)" in block
    for index, norm in enumerate(("query_norm", "key_norm", "value_norm")):
        assert f"self.{norm}(attention_in[{index}]).to(dtype)" in block
    files = package.render()
    assert "class DepthQueries(nn.Module):" in files["model.py"]
    compile(files["model.py"], "model.py", "exec")


def test_three_queries_without_layer_types_are_refused():
    with pytest.raises(EditError, match="self.sliding"):
        AttentionResiduals().apply(_package(), residuals=WIDE)
