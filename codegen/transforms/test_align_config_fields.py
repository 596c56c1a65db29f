"""AlignConfigFields: before/after for standard, renamed, legacy and derived config fields."""

import subprocess

from codegen.transforms.align_config_fields import AlignConfigFields
from codegen.transforms.testing import package_of

BEFORE = """
FIXED_SETTINGS = {"hidden_act": "silu", "attention_bias": False}


def from_hf_config(hf_config):
    require_settings(hf_config, FIXED_SETTINGS)
    return Args(
        dim=hf_config.hidden_size,
        n_kv_heads=hf_config.num_key_value_heads,
        head_dim=getattr(hf_config, "head_dim", None)
        or hf_config.hidden_size // hf_config.num_attention_heads,
        rope=Rope.from_hf(hf_config.rope_parameters, hf_config.max_position_embeddings),
    )
"""

# a transformers-style config: every read is answered, nothing changes but FIXED_SETTINGS
STANDARD = [
    "hidden_size",
    "num_key_value_heads",
    "num_attention_heads",
    "head_dim",
    "rope_parameters",
    "max_position_embeddings",
    "hidden_act",
]

# an older remote-code config (n_embd / n_head, multi_query, kv_channels, top-level RoPE fields)
LEGACY = [
    "n_embd",
    "n_head",
    "multi_query",
    "kv_channels",
    "rotary_pct",
    "rope_theta",
    "rope_scaling",
    "seq_length",
]

LEGACY_AFTER = """
FIXED_SETTINGS = {}


def from_hf_config(hf_config):
    require_settings(hf_config, FIXED_SETTINGS)
    return Args(
        dim=hf_config.n_embd,
        n_kv_heads=1 if hf_config.multi_query else hf_config.n_head,
        head_dim=getattr(hf_config, "kv_channels", None) or hf_config.n_embd // hf_config.n_head,
        rope=Rope.from_hf(
            {
                "rope_type": "default",
                "rope_theta": hf_config.rope_theta,
                "partial_rotary_factor": hf_config.rotary_pct,
                **(hf_config.rope_scaling or {}),
            },
            hf_config.seq_length,
        ),
    )
"""


def _apply(fields, config=None):
    package = package_of({"args.py": BEFORE})
    AlignConfigFields().apply(package, fields=fields, config=config or {})
    return _formatted(package.render()["args.py"])


def _formatted(code: str) -> str:
    """As scaffold writes it (ruff format runs last)."""
    from codegen.scaffold.tidy import ruff_binary

    done = subprocess.run(
        [ruff_binary(), "format", "-"], input=code, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_a_standard_config_keeps_every_read():
    after = _apply(STANDARD, {"attention_bias": True})
    # attention_bias is not a field of this config: dropped; hidden_act kept
    assert 'FIXED_SETTINGS = {"hidden_act": "silu"}' in after
    assert after.split("def from_hf_config")[1] == BEFORE.split("def from_hf_config")[1]


def test_a_pinned_field_held_under_an_alias_is_pinned_there():
    # JetMoE's activation_function: with the pinned value, another setting is refused
    fields = [f for f in STANDARD if f != "hidden_act"] + ["activation_function"]
    after = _apply(fields, {"activation_function": "silu"})
    assert 'FIXED_SETTINGS = {"activation_function": "silu"}' in after
    # another value under the alias: the entry goes, as for a field the config lacks
    assert "FIXED_SETTINGS = {}" in _apply(fields, {"activation_function": "gelu"})


def test_legacy_fields_are_read_under_their_own_names_and_derived():
    assert _apply(LEGACY) == LEGACY_AFTER.lstrip()


def test_group_count_of_multi_query_attention():
    fields = ["hidden_size", "num_attention_heads", "multi_query_attention"]
    fields.append("multi_query_group_num")
    after = " ".join(_apply(fields).split())
    assert (
        "n_kv_heads=hf_config.multi_query_group_num if hf_config.multi_query_attention "
        "else hf_config.num_attention_heads" in after
    )


def test_rotary_dim_is_a_fraction_of_the_resolved_head_dim():
    fields = ["hidden_size", "num_attention_heads", "rotary_dim", "rope_theta"]
    after = _apply(fields)
    namespace = {"hidden_size": 96, "num_attention_heads": 4, "rotary_dim": 12, "rope_theta": 1e4}
    rope = _rope_argument(after, namespace)
    assert rope["partial_rotary_factor"] == 0.5  # 12 of head_dim 24, not 12 / 96 // 4


def test_no_window_field_falls_back_to_no_window_but_an_optional_read_keeps_its_default():
    after = _apply(["hidden_size", "num_attention_heads", "rope_parameters"])
    assert 'getattr(hf_config, "head_dim", None)' in after  # its default already says it
    assert "n_kv_heads=hf_config.num_attention_heads" in after  # no kv field: one per head


def _rope_argument(code: str, values: dict) -> dict:
    """Evaluate the first argument of Rope.from_hf(...) in `code` on a config of `values`."""
    import ast
    import types

    call = next(
        node
        for node in ast.walk(ast.parse(code))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "Rope.from_hf"
    )
    config = types.SimpleNamespace(rope_scaling=None, **values)
    return eval(ast.unparse(call.args[0]), {"hf_config": config})  # noqa: S307


def test_initializer_range_is_read_as_init_std_where_a_config_calls_it_so():
    source = (
        'def from_hf_config(hf_config):\n    return getattr(hf_config, "initializer_range", 0.02)\n'
    )
    package = package_of({"args.py": source})
    AlignConfigFields().apply(package, fields=["hidden_size", "init_std"], config={})
    assert 'getattr(hf_config, "init_std", 0.02)' in package.render()["args.py"]


class _Features:
    """Analysis values by dotted path, as `Features.get` answers them."""

    def __init__(self, **values):
        self.values = {path.replace("__", "."): value for path, value in values.items()}

    def get(self, path):
        return self.values.get(path)


CODE_FIXES = """
def from_hf_config(hf_config):
    if hf_config.hidden_act != "silu":
        raise NotImplementedError(hf_config.hidden_act)
    return Args(
        norm_eps=hf_config.rms_norm_eps,
        rope_interleave=bool(hf_config.rope_interleave),
        hidden_dim=hf_config.intermediate_size,
    )
"""


def _code_fixes(fields, features):
    package = package_of({"args.py": CODE_FIXES})
    AlignConfigFields().apply(package, features, fields=fields, config={})
    return package.render()["args.py"]


def test_a_value_the_code_fixes_stands_for_a_field_the_config_lacks():
    """OLMo fixes its epsilon in the norm, lfm2 calls F.silu, DeepSeek-V3.2 always rotates
    in pairs: the analysed value is what the package reads."""
    features = _Features(norm__eps=1e-05, ffn__activation="silu", rope__interleaved=True)
    after = _code_fixes(["hidden_size", "intermediate_size"], features)
    assert "norm_eps=1e-05" in after
    assert "rope_interleave=bool(True)" in after
    assert "if 'silu' != \"silu\":" in after  # folded later by fold_constant_branches
    assert "hf_config.intermediate_size" in after


def test_config_fields_win_but_a_constant_the_code_fixes_and_unknown_is_no_value():
    features = _Features(norm__eps=1e-05, ffn__activation="unknown", rope__interleaved=True)
    after = _code_fixes(["layer_norm_epsilon", "rope_interleave", "intermediate_size"], features)
    # norm.eps is found only where no config value is the code's epsilon: the config's
    # field is one the code never reads (BioGPT's layer_norm_eps beside nn.LayerNorm's 1e-5)
    assert "norm_eps=1e-05" in after
    assert "rope_interleave=bool(hf_config.rope_interleave)" in after
    assert "hf_config.hidden_act" in after  # "unknown" stands for nothing: left to fail loudly


def test_the_epsilon_field_the_norms_read_wins_over_a_declared_one():
    """cohere2_moe declares rms_norm_eps (None) beside the layer_norm_eps its LayerNorms
    read: the package reads the field the analysis saw the code pass."""
    fields = ["rms_norm_eps", "layer_norm_eps", "intermediate_size"]
    before = _code_fixes(fields, _Features())
    assert "norm_eps=hf_config.rms_norm_eps" in before
    after = _code_fixes(fields, _Features(norm__eps_field="layer_norm_eps"))
    assert "norm_eps=hf_config.layer_norm_eps" in after
    # a field the config does not have is no read: the declared one stays
    missing = _code_fixes(fields, _Features(norm__eps_field="norm_epsilon"))
    assert "norm_eps=hf_config.rms_norm_eps" in missing


def test_the_field_the_activation_is_looked_up_by_is_pinned_at_the_configs_value():
    """openai-gpt's `ACT_FNS[config.afn]` maps afn="gelu" to gelu_new: the package computes
    gelu_new (FIXED_SETTINGS hidden_act) and refuses any afn but the "gelu" that chose it."""
    package = package_of({"args.py": BEFORE.replace('"silu"', '"gelu_new"')})
    fields = [f for f in STANDARD if f != "hidden_act"] + ["afn"]
    features = _Features(ffn__activation_field="afn")
    AlignConfigFields().apply(package, features, fields=fields, config={"afn": "gelu"})
    assert 'FIXED_SETTINGS = {"afn": "gelu"}' in package.render()["args.py"]


def test_a_width_given_as_a_multiple_of_the_hidden_size_is_derived():
    after = _code_fixes(["hidden_size", "intermediate_multiple_size"], _Features())
    assert "hidden_dim=int(hf_config.hidden_size * hf_config.intermediate_multiple_size)" in after


def test_a_width_given_as_an_expansion_ratio_is_derived():
    after = _code_fixes(["hidden_size", "expansion_ratio"], _Features())
    assert "hidden_dim=int(hf_config.expansion_ratio * hf_config.hidden_size)" in after


LOOP = """
def check(hf_config):
    for name in ("n_group", "first_k_dense_replace", "num_experts_per_tok"):
        if getattr(hf_config, name) is None:
            fail(name)
"""


def test_a_loop_over_field_names_keeps_the_fields_the_config_has():
    package = package_of({"args.py": LOOP})
    fields = ["n_group", "num_experts_per_tok"]  # no first_k_dense_replace (axk1)
    AlignConfigFields().apply(package, fields=fields, config={})
    assert 'for name in ("n_group", "num_experts_per_tok"):' in package.render()["args.py"]


def test_a_loop_left_with_no_field_goes():
    package = package_of({"args.py": LOOP})
    AlignConfigFields().apply(package, fields=["hidden_size"], config={})
    assert "for name in" not in package.render()["args.py"]


def test_a_loop_reads_an_alias_under_its_name():
    package = package_of({"args.py": LOOP.replace('"n_group", ', "")})
    fields = ["first_k_dense_replace", "num_experts"]  # num_experts_per_tok: no alias
    AlignConfigFields().apply(package, fields=fields, config={})
    assert 'for name in ("first_k_dense_replace",):' in package.render()["args.py"]


def test_a_width_the_code_fixes_as_a_multiple_of_the_hidden_size_is_read_so():
    """bloom's MLP is `4 * hidden_size` and its config has no width field: the package reads
    four times the hidden size, the multiple taken from the analysed width over the config's."""
    package = package_of({"args.py": CODE_FIXES})
    features = _Features(ffn__intermediate_size=256)
    AlignConfigFields().apply(package, features, fields=["hidden_size"], config={"hidden_size": 64})
    assert "hidden_dim=4 * hf_config.hidden_size" in package.render()["args.py"]
    # not a whole multiple, or a config holding the width: no multiple is read
    package = package_of({"args.py": CODE_FIXES})
    odd = _Features(ffn__intermediate_size=100)
    AlignConfigFields().apply(package, odd, fields=["hidden_size"], config={"hidden_size": 64})
    assert "* hf_config.hidden_size" not in package.render()["args.py"]
    after = _code_fixes(["hidden_size", "intermediate_size"], features)
    assert "hidden_dim=hf_config.intermediate_size" in after


def test_a_multiple_of_a_field_the_config_stores_under_another_name():
    """openai-gpt's config holds hidden_size as n_embd (attribute_map): the multiple is still
    taken over its value, and the package reads hidden_size."""
    package = package_of({"args.py": CODE_FIXES})
    features = _Features(ffn__intermediate_size=384)
    fields = ["hidden_size", "n_embd"]
    AlignConfigFields().apply(package, features, fields=fields, config={"n_embd": 96})
    assert "hidden_dim=4 * hf_config.hidden_size" in package.render()["args.py"]


SUB_READ = """
def from_hf_config(hf_config):
    return Args(clip_qkv=hf_config.clip_qkv, eps=hf_config.rms_norm_eps)
"""


def test_a_field_held_by_one_sub_config_is_read_there():
    """MPT keeps clip_qkv in attn_config (listed as `attn_config.clip_qkv`); a field two
    sub-configs hold is ambiguous and left alone."""
    package = package_of({"args.py": SUB_READ})
    fields = ["attn_config", "attn_config.clip_qkv", "rms_norm_eps"]
    AlignConfigFields().apply(package, None, fields=fields, config={})
    assert "clip_qkv=hf_config.attn_config.clip_qkv" in package.render()["args.py"]
    package = package_of({"args.py": SUB_READ})
    fields = ["a_config.clip_qkv", "b_config.clip_qkv", "rms_norm_eps"]
    AlignConfigFields().apply(package, None, fields=fields, config={})
    assert "clip_qkv=hf_config.clip_qkv," in package.render()["args.py"]


def _with_source(tmp_path, text: str, **values):
    import types

    path = tmp_path / "modeling_x.py"
    path.write_text(text)
    features = _Features(**values)
    features.source = types.SimpleNamespace(modeling=str(path))
    return features


MLP_FIXED = """
class MLP:
    def __init__(self, config):
        self.up = Linear(config.hidden_size, 4 * config.hidden_size)
"""


def test_a_width_the_code_fixes_wins_over_a_ratio_it_never_reads(tmp_path):
    """MPT's MLP is 4 * hidden_size whatever its config's expansion_ratio says: deriving the
    width from the unread ratio would build another model for ratio != 4."""
    fields = ["hidden_size", "expansion_ratio"]
    config = {"hidden_size": 96, "expansion_ratio": 4}

    def width(source: str) -> str:
        package = package_of({"args.py": CODE_FIXES})
        features = _with_source(tmp_path, source, ffn__intermediate_size=384)
        AlignConfigFields().apply(package, features, fields=fields, config=config)
        return package.render()["args.py"]

    assert "hidden_dim=4 * hf_config.hidden_size," in width(MLP_FIXED)
    reads = MLP_FIXED.replace("4 * config.hidden_size", "config.expansion_ratio * config.d")
    assert "hidden_dim=int(hf_config.expansion_ratio * hf_config.hidden_size)" in width(reads)


def test_a_field_hf_reads_where_present_is_read_so_where_the_class_lacks_it(tmp_path):
    """Exaone4Config declares no head_dim, yet HF reads `getattr(config, "head_dim", hidden //
    heads)`: a config.json carrying another head_dim builds other shapes in HF, so the
    package reads it too (the derivation only where it is missing); a source that never
    reads it keeps the bare derivation."""
    from types import SimpleNamespace

    args = "def from_hf_config(hf_config):\n    return Args(head_dim=hf_config.head_dim)\n"
    fields = ["hidden_size", "num_attention_heads"]
    afters = {}
    for name, line in {
        "reads": 'self.head_dim = getattr(config, "head_dim", config.hidden_size // 2)',
        "never": "self.head_dim = config.hidden_size // config.num_attention_heads",
    }.items():
        modeling = tmp_path / f"modeling_{name}.py"
        modeling.write_text(f"def g(config):\n    {line}\n")
        # no analysed values (`Features.get` answers None): the source alone decides
        features = SimpleNamespace(
            source=SimpleNamespace(modeling=str(modeling)), get=lambda path: None
        )
        package = package_of({"args.py": args})
        AlignConfigFields().apply(package, features, fields=fields, config={})
        afters[name] = _formatted(package.render()["args.py"])
    assert 'getattr(hf_config, "head_dim", None)' in afters["reads"]
    assert "hf_config.hidden_size // hf_config.num_attention_heads" in afters["reads"]
    assert "getattr" not in afters["never"]
    assert "head_dim=hf_config.hidden_size // hf_config.num_attention_heads" in afters["never"]


SIZES = """
def from_hf_config(hf_config):
    return Args(
        dim=hf_config.hidden_size,
        n_layers=hf_config.num_hidden_layers,
        n_heads=hf_config.num_attention_heads,
        n_kv_heads=hf_config.num_key_value_heads,
        head_dim=hf_config.head_dim,
        hidden_dim=hf_config.intermediate_size,
        vocab_size=hf_config.vocab_size,
        pad_token_id=padding_row(hf_config.pad_token_id, hf_config.vocab_size),
    )
"""

SIZES_RENAMED = """
def from_hf_config(hf_config):
    return Args(
        dim=hf_config.hidden_size,
        n_layers=hf_config.n_blocks,
        n_heads=hf_config.n_q_heads,
        n_kv_heads=hf_config.n_kv,
        head_dim=hf_config.head_width,
        hidden_dim=hf_config.mlp_width,
        vocab_size=hf_config.n_tokens,
        pad_token_id=padding_row(hf_config.pad_token_id, hf_config.n_tokens),
    )
"""

# the analysis' fields for each size, as the constructors were passed them
SIZE_FEATURES = {
    "ffn__width_field": "mlp_width",
    "embedding__vocab_field": "n_tokens",
    "block__layers_field": "n_blocks",
    "attention__heads_field": "n_q_heads",
    "attention__kv_heads_field": "n_kv",
    "attention__head_dim_field": "head_width",
}


def _sizes(fields, features):
    package = package_of({"args.py": SIZES})
    AlignConfigFields().apply(package, features, fields=fields, config={})
    return package.render()["args.py"]


def test_each_size_is_read_from_the_field_the_code_builds_it_with():
    """A remote config naming its sizes otherwise (`n_tokens` for vocab_size): every read of
    a size becomes the field the analysis saw the constructor passed, none an alias knows."""
    fields = ["hidden_size", "pad_token_id", *SIZE_FEATURES.values()]
    assert _sizes(fields, _Features(**SIZE_FEATURES)) == SIZES_RENAMED


def test_a_usual_name_the_code_does_not_read_gives_way_to_the_one_it_does():
    """Whisper's config answers num_hidden_layers with encoder_layers, while its causal LM's
    decoder builds decoder_layers layers of decoder_ffn_dim: the package reads those."""
    whisper = {
        "block__layers_field": "decoder_layers",
        "ffn__width_field": "decoder_ffn_dim",
        "attention__heads_field": "decoder_attention_heads",
    }
    fields = ["hidden_size", "pad_token_id", "vocab_size", "head_dim", "num_key_value_heads"]
    fields += ["num_hidden_layers", "intermediate_size", "num_attention_heads", *whisper.values()]
    after = _sizes(fields, _Features(**whisper))
    expected = SIZES.replace("hf_config.num_hidden_layers", "hf_config.decoder_layers")
    expected = expected.replace(
        "hf_config.num_attention_heads", "hf_config.decoder_attention_heads"
    )
    assert after == expected
    # the FFN width is one of several a model may have (a shared expert's, the experts'):
    # the analysed field replaces it only where the config has no intermediate_size
    without = [f for f in fields if f != "intermediate_size"]
    assert "hf_config.decoder_ffn_dim" in _sizes(without, _Features(**whisper))
    # the field the code reads is the package's already, or the config lacks it: unchanged
    same = {"block__layers_field": "num_hidden_layers", "ffn__width_field": "ffn_width"}
    assert _sizes(fields, _Features(**same)) == SIZES
