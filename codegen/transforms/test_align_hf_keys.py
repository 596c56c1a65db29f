"""AlignHfKeys: before/after on an adapter table and the model it belongs to."""

import types

import pytest

from codegen.transforms.align_hf_keys import AlignHfKeys
from codegen.transforms.testing import package_of

MODEL = """
class Attention:
    def __init__(self, args):
        self.wq = nn.Linear(args.dim, args.dim, bias=args.attention_bias)
        self.wo = nn.Linear(args.dim, args.dim, bias=False)
"""

BEFORE = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attention.wq.weight",
        "model.layers.{}.self_attn.q_proj.bias": "layers.{}.attention.wq.bias",
        "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
        "model.layers.{}.self_attn.o_proj.bias": "layers.{}.attention.wo.bias",
    }
"""

# the toy checkpoint has no biases: o's row is dead (its bias is a literal False), q's is
# kept because a checkpoint with attention_bias=True carries it
AFTER = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.self_attn.q_proj.weight": "layers.{}.attention.wq.weight",
        "model.layers.{}.self_attn.q_proj.bias": "layers.{}.attention.wq.bias",
        "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
    }
"""


def test_rows_the_checkpoint_lacks_go_unless_a_switch_can_create_them():
    package = package_of({"state_dict_adapter.py": BEFORE, "model.py": MODEL})
    AlignHfKeys().apply(
        package,
        prefix="model.layers",
        layer_keys=["self_attn.q_proj.weight", "self_attn.o_proj.weight"],
        other_keys=[],
    )
    assert package.render()["state_dict_adapter.py"] == AFTER


QK_NORM = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.self_attn.q_norm.weight": "layers.{}.attention.q_norm.weight",
        "model.layers.{}.self_attn.k_norm.weight": "layers.{}.attention.k_norm.weight",
    }
"""


def test_qk_norm_rows_follow_the_checkpoints_names():
    """HunYuan names them query_layernorm/key_layernorm, persimmon q_layernorm/k_layernorm."""
    for q, k in (("query_layernorm", "key_layernorm"), ("q_layernorm", "k_layernorm")):
        package = package_of({"state_dict_adapter.py": QK_NORM, "model.py": MODEL})
        layer_keys = [f"self_attn.{q}.weight", f"self_attn.{k}.weight"]
        AlignHfKeys().apply(package, prefix="model.layers", layer_keys=layer_keys, other_keys=[])
        adapter = package.render()["state_dict_adapter.py"]
        assert f'"model.layers.{{}}.self_attn.{q}.weight": "layers.{{}}.attention.q_norm' in adapter
        assert f'"model.layers.{{}}.self_attn.{k}.weight": "layers.{{}}.attention.k_norm' in adapter


EMBEDDING = """
class StateDictAdapter:
    from_hf_map = {
        "model.embed_tokens.weight": "tok_embeddings.weight",
        "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
    }
"""


def test_a_base_model_prefix_never_seen_before_pairs_with_the_references():
    """A new architecture's base model (here `zephyrnet`, where the analysis found its
    layers) holds the embedding too: no table needs to know the name."""
    package = package_of({"state_dict_adapter.py": EMBEDDING, "model.py": MODEL})
    AlignHfKeys().apply(
        package,
        prefix="zephyrnet.layers",
        layer_keys=["attention.dense.weight"],
        other_keys=["zephyrnet.embed_in.weight"],
    )
    adapter = package.render()["state_dict_adapter.py"]
    assert '"zephyrnet.embed_in.weight": "tok_embeddings.weight"' in adapter
    assert (
        '"zephyrnet.layers.{}.attention.dense.weight": "layers.{}.attention.wo.weight"' in adapter
    )


ELIMINATION = """
class StateDictAdapter:
    from_hf_map = {
        "model.embed_tokens.weight": "tok_embeddings.weight",
        "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
        "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w1.weight",
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
        "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
        "model.norm.weight": "norm.weight",
    }
"""


def test_gpt2_c_proj_under_attn_is_o_proj_by_elimination():
    """`c_proj` names GPT-2's down projection and its attention output: the MLP's pairs by
    synonym, the attention's is the one key left that differs from o_proj by one name."""
    package = package_of({"state_dict_adapter.py": ELIMINATION, "model.py": MODEL})
    AlignHfKeys().apply(
        package,
        prefix="transformer.h",
        layer_keys=["attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight", "ln_2.weight"],
        other_keys=["transformer.wte.weight", "transformer.ln_f.weight"],
    )
    table = package.render()["state_dict_adapter.py"]
    assert '"transformer.h.{}.attn.c_proj.weight": "layers.{}.attention.wo.weight"' in table
    assert '"transformer.h.{}.mlp.c_proj.weight": "layers.{}.feed_forward.w2.weight"' in table


def test_a_level_one_side_lacks_pairs_by_elimination_norms_with_norms():
    """OPT: the stack sits under model.decoder, fc1/fc2 have no mlp container, and the
    layer's second norm is called final_layer_norm like the model's last one."""
    package = package_of({"state_dict_adapter.py": ELIMINATION, "model.py": MODEL})
    AlignHfKeys().apply(
        package,
        prefix="model.decoder.layers",
        layer_keys=[
            "self_attn.out_proj.weight",
            "fc1.weight",
            "fc2.weight",
            "final_layer_norm.weight",
        ],
        other_keys=["model.decoder.embed_tokens.weight", "model.decoder.final_layer_norm.weight"],
    )
    table = package.render()["state_dict_adapter.py"]
    for row in (
        '"model.decoder.embed_tokens.weight": "tok_embeddings.weight"',
        '"model.decoder.layers.{}.fc1.weight": "layers.{}.feed_forward.w1.weight"',
        '"model.decoder.layers.{}.fc2.weight": "layers.{}.feed_forward.w2.weight"',
        '"model.decoder.layers.{}.final_layer_norm.weight": "layers.{}.ffn_norm.weight"',
        '"model.decoder.final_layer_norm.weight": "norm.weight"',
    ):
        assert row in table


BRANCHED_BLOCK = """
class TransformerBlock:
    def __init__(self, args, layer_id):
        if args.is_moe_layer(layer_id):
            self.moe = MoE(args)
        else:
            self.feed_forward = FeedForward(args.dim, args.hidden_dim)
        self.attention_norm = nn.LayerNorm(args.dim)
"""

DENSE_AND_MOE_ROWS = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.gate.weight": "layers.{}.moe.gate.weight",
        "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w1.weight",
        "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
    }
"""

# the toy's layers are all MoE: the dense FFN's row stays (a setting with dense layers
# builds it), the norm the block never builds goes
DENSE_KEPT = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.gate.weight": "layers.{}.moe.gate.weight",
        "model.layers.{}.mlp.gate_proj.weight": "layers.{}.feed_forward.w1.weight",
    }
"""


MOE_ONLY = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.gate.weight": "layers.{}.moe.gate.weight",
    }
"""


def _dense_rule(rule):
    return types.SimpleNamespace(get={"moe.dense_rule": rule}.get)


@pytest.mark.parametrize(
    "rule, after",
    [
        # HF's layers choose their FFN (cohere2_moe): the dense FFN's row stays
        ('config.mlp_layer_types[layer_idx] == "dense"', DENSE_KEPT),
        # every HF layer is MoE (mixtral): the reference's dense branch is never taken
        (None, MOE_ONLY),
    ],
)
def test_weights_inside_a_module_built_on_a_branch_stay_where_hf_layers_branch(rule, after):
    package = package_of({"state_dict_adapter.py": DENSE_AND_MOE_ROWS, "model.py": BRANCHED_BLOCK})
    AlignHfKeys().apply(
        package,
        _dense_rule(rule),
        prefix="model.layers",
        layer_keys=["mlp.gate.weight"],
        other_keys=[],
    )
    assert package.render()["state_dict_adapter.py"] == after


FFN_AND_NORMS = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.input_layernorm.weight": "layers.{}.attention_norm.weight",
        "model.layers.{}.post_attention_layernorm.weight": "layers.{}.ffn_norm.weight",
        "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w1.weight",
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
    }
"""


class _Found:
    """The analysis' module roles: where each block norm and FFN projection sits."""

    def __init__(self, norms=(), ffn=()):
        self.values = {"norm.block_names": norms, "ffn.block_names": ffn}

    def get(self, dotted):
        return self.values.get(dotted)


def test_module_roles_from_the_analysis_pair_names_no_synonym_knows():
    """CTRL: `layernorm1`/`layernorm2` and the Sequential's `ffn.0`/`ffn.2` (both one edit
    from up_proj and from down_proj: no elimination can tell them apart)."""
    keys = ["layernorm1.weight", "layernorm2.weight", "ffn.0.weight", "ffn.2.weight"]
    found = _Found(
        norms=(("attention_norm", "layernorm1"), ("ffn_norm", "layernorm2")),
        ffn=(("up_proj", "ffn.0"), ("down_proj", "ffn.2")),
    )
    package = package_of({"state_dict_adapter.py": FFN_AND_NORMS})
    AlignHfKeys().apply(package, found, prefix="transformer.h", layer_keys=keys, other_keys=[])
    rows = package.render()["state_dict_adapter.py"]
    for hf, house in (
        ("layernorm1", "attention_norm"),
        ("layernorm2", "ffn_norm"),
        ("ffn.0", "feed_forward.w1"),
        ("ffn.2", "feed_forward.w2"),
    ):
        assert f'"transformer.h.{{}}.{hf}.weight": "layers.{{}}.{house}.weight"' in rows
    # without the roles the FFN rows pair with nothing and go
    package = package_of({"state_dict_adapter.py": FFN_AND_NORMS})
    AlignHfKeys().apply(package, prefix="transformer.h", layer_keys=keys, other_keys=[])
    assert "ffn.0" not in package.render()["state_dict_adapter.py"]


BERT_LAYER = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
        "model.layers.{}.mlp.up_proj.weight": "layers.{}.feed_forward.w1.weight",
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
    }
"""


def test_a_role_path_names_the_module_it_starts_with_only():
    """BERT: `output.dense` is the FFN's down projection, and `attention.output.dense` the
    attention's o-proj (a path inside the attention, not the FFN's module)."""
    keys = ["attention.output.dense.weight", "intermediate.dense.weight", "output.dense.weight"]
    found = _Found(ffn=(("up_proj", "intermediate.dense"), ("down_proj", "output.dense")))
    package = package_of({"state_dict_adapter.py": BERT_LAYER})
    AlignHfKeys().apply(package, found, prefix="bert.encoder.layer", layer_keys=keys, other_keys=[])
    rows = package.render()["state_dict_adapter.py"]
    for hf, house in (
        ("attention.output.dense", "attention.wo"),
        ("intermediate.dense", "feed_forward.w1"),
        ("output.dense", "feed_forward.w2"),
    ):
        assert f'"bert.encoder.layer.{{}}.{hf}.weight": "layers.{{}}.{house}.weight"' in rows


def test_a_switched_bias_the_toy_lacks_follows_its_renamed_weight():
    """ModernBERT: `attn.q_proj` in the checkpoint; with attention_bias off the toy has no
    bias key, but a checkpoint with it on stores the bias beside the weight."""
    package = package_of({"state_dict_adapter.py": BEFORE, "model.py": MODEL})
    AlignHfKeys().apply(
        package,
        prefix="model.layers",
        layer_keys=["attn.q_proj.weight", "attn.o_proj.weight"],
        other_keys=[],
    )
    rows = package.render()["state_dict_adapter.py"]
    assert '"model.layers.{}.attn.q_proj.bias": "layers.{}.attention.wq.bias"' in rows
    assert "self_attn" not in rows


CHOSEN = """
class Experts:
    def __init__(self, args):
        self.router = nn.Linear(args.dim, 8, bias=False)
        self.table = nn.Embedding(16, args.dim)


class Block:
    def __init__(self, args):
        self.feed_forward = Experts(args) if args.is_moe else FeedForward(args)
"""

CHOSEN_ROWS = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.mlp.down_proj.weight": "layers.{}.feed_forward.w2.weight",
        "model.layers.{}.mlp.router_gate.weight": "layers.{}.feed_forward.router.weight",
        "model.layers.{}.mlp.table.weight": "layers.{}.feed_forward.table.weight",
        "model.layers.{}.mlp.gone.weight": "layers.{}.feed_forward.gone.weight",
    }
"""


def test_rows_of_a_class_a_conditional_expression_builds_stay():
    """The toy checkpoint (switch off) lacks the experts' keys; a checkpoint with it on has
    them. A row of a module nothing builds still goes."""
    package = package_of({"state_dict_adapter.py": CHOSEN_ROWS, "model.py": CHOSEN})
    AlignHfKeys().apply(
        package, prefix="model.layers", layer_keys=["mlp.down_proj.weight"], other_keys=[]
    )
    adapter = package.render()["state_dict_adapter.py"]
    assert '"layers.{}.feed_forward.router.weight"' in adapter
    assert '"layers.{}.feed_forward.table.weight"' in adapter
    assert "gone" not in adapter


CONVERTED = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.self_attn.q_a_proj.weight": "layers.{}.attention.wq_a.weight",
        "model.layers.{}.self_attn.q_a_norm.weight": "layers.{}.attention.q_a_norm.weight",
        "model.layers.{}.self_attn.k_proj.weight": "layers.{}.attention.wk.weight",
        "model.layers.{}.self_attn.k_norm.weight": "layers.{}.attention.k_norm.weight",
    }
"""


def test_rows_the_conversion_mapping_renames_leave_the_others_to_elimination():
    """deepseek_v4 on disk (transformers' conversion mapping): `q_a_proj` is `attn.wq_a`,
    `q_a_norm` is `attn.q_norm`. Those rows take their keys, so the reference's `k_proj` and
    `k_norm` are each the one row left one name from `attn.wkv` and `attn.norm`; counted as
    unpaired, `q_a_proj` and `q_a_norm` made both pairings ambiguous and the rows went."""
    keys = ["attn.wq_a.weight", "attn.q_norm.weight", "attn.wkv.weight", "attn.norm.weight"]
    features = types.SimpleNamespace(model_type="deepseek_v4", get={}.get)
    package = package_of({"state_dict_adapter.py": CONVERTED})
    AlignHfKeys().apply(package, features, prefix="model.layers", layer_keys=keys, other_keys=[])
    rows = package.render()["state_dict_adapter.py"]
    for hf, house in (
        ("wq_a", "wq_a"),
        ("q_norm", "q_a_norm"),
        ("wkv", "wk"),
        ("norm", "k_norm"),
    ):
        row = f'"model.layers.{{}}.attn.{hf}.weight": "layers.{{}}.attention.{house}.weight"'
        assert row in rows


TRANSPOSED = """
class StateDictAdapter:
    from_hf_map = {
        "model.layers.{}.self_attn.o_proj.weight": "layers.{}.attention.wo.weight",
        "model.layers.{}.self_attn.k_sconv.static_weight": "layers.{}.attention.k_conv.weight",
    }
    transposed = frozenset({"model.layers.{}.self_attn.k_sconv.static_weight"})
"""


def test_keys_stored_transposed_are_renamed_with_their_rows():
    """A checkpoint naming the module otherwise (Inkling-2's `attn.k_sconv.static_w`): the
    adapter's `transposed` set names the key as its row does."""
    package = package_of({"state_dict_adapter.py": TRANSPOSED, "model.py": MODEL})
    AlignHfKeys().apply(
        package,
        prefix="model.llm.layers",
        layer_keys=["attn.o_proj.weight", "attn.k_sconv.static_w"],
        other_keys=[],
    )
    table = package.render()["state_dict_adapter.py"]
    key = "model.llm.layers.{}.attn.k_sconv.static_w"
    assert f'"{key}": "layers.{{}}.attention.k_conv.weight"' in table
    assert f'transposed = frozenset({{"{key}"}})' in table
