"""Where each norm's epsilon comes from (`norm.eps_sources`), and the layer norms at a number
of the code's own while the final norm reads a config field (`norm.layer_eps`).

CTRL builds its block norms with `eps=1e-6` written in the code and its final norm with
`eps=config.layer_norm_epsilon`; the default config holds 1e-6 too, so only the construction
sites tell them apart. Read so on the installed file, on a renamed copy, and on a copy whose
config defaults the field to another number (where the final norm's epsilon must stay the
config's, not the layer norms' constant). A small synthetic model varies one site at a time:
a class default, a literal, a local (followed to its binding where it has one), block norms
of two sources, q/k norms."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from analyze_helpers import rename_model, write_synth

from codegen.analyze.analysis import analyze
from codegen.analyze.locate import model_type_files

CTRL = {"block": "literal 1e-06", "final": "config.layer_norm_epsilon"}


def _lines(model_type: str, pattern: str) -> list[int]:
    """The lines of the installed modeling file matching `pattern`."""
    modeling = Path(model_type_files(model_type)[0])
    text = modeling.read_text(encoding="utf-8").splitlines()
    return [i for i, line in enumerate(text, 1) if re.search(pattern, line)]


def _ctrl_facts(features) -> None:
    assert features.norm.eps_sources == CTRL
    assert features.norm.layer_eps == 1e-6
    assert features.norm.eps is None  # no constant stands for every norm's epsilon
    assert features.norm.eps_field == "layer_norm_epsilon"  # the final norm's


def test_ctrl_block_norms_are_at_a_literal_and_its_final_norm_at_the_config():
    features = analyze("ctrl")
    _ctrl_facts(features)
    literal = _lines("ctrl", r"LayerNorm\(.*eps=1e-6\)")
    (final,) = _lines("ctrl", r"LayerNorm\(.*eps=config\.layer_norm_epsilon\)")
    assert len(literal) == 2
    evidence = features.evidence["norm.eps_sources"]
    assert evidence == (
        f"block modeling_ctrl.py:{literal[0]}, modeling_ctrl.py:{literal[1]};"
        f" final modeling_ctrl.py:{final}"
    )
    assert f"modeling_ctrl.py:{final}" in features.evidence["norm.layer_eps"]
    assert "eps=1e-06 in the code" in features.evidence["norm.layer_eps"]


def test_a_renamed_copy_reads_the_same(tmp_path):
    copy, _ = rename_model("ctrl", "zorblax", str(tmp_path))
    features = analyze(copy)
    _ctrl_facts(features)
    assert features.evidence["norm.eps_sources"].startswith("block modeling_zorblax.py:")


def test_a_config_defaulting_to_another_epsilon_keeps_the_final_norm_on_it(tmp_path):
    """With the config's default 1e-5 the literal 1e-6 is no config value: it is still the
    layer norms' alone, never the package's `norm_eps` (the final norm's)."""
    copy, _ = rename_model("ctrl", "zorblax", str(tmp_path))
    configuration = Path(copy).with_name("configuration_zorblax.py")
    text = configuration.read_text(encoding="utf-8")
    changed = re.sub(r"(layer_norm_epsilon: float = )1e-0?6", r"\g<1>1e-5", text)
    assert changed != text
    configuration.write_text(changed, encoding="utf-8")
    features = analyze(copy)
    _ctrl_facts(features)


@pytest.mark.parametrize(
    ("model_type", "field"),
    [("llama", "rms_norm_eps"), ("gpt2", "layer_norm_epsilon"), ("gpt_neox", "layer_norm_eps")],
)
def test_norms_all_reading_the_config_have_no_own_layer_eps(model_type, field):
    features = analyze(model_type)
    said = f"config.{field}"
    assert features.norm.eps_sources == {"block": said, "final": said}
    assert features.norm.layer_eps is None
    assert features.norm.eps_field == field


def test_jetmoe_layer_norms_at_their_class_default():
    features = analyze("jetmoe")
    assert features.norm.eps_sources == {
        "block": "class default 1e-06",
        "final": "config.rms_norm_eps",
    }
    assert features.norm.layer_eps == 1e-6
    assert "no eps: its class's 1e-06" in features.evidence["norm.layer_eps"]


def _synth(folder: Path, *edits: tuple[str, str], q_norm: bool = False) -> str:
    """The synthetic llama-like model (every norm at its class's default 1e-6), each
    (old, new) edit made once in its modeling file."""
    flags = dict(qkv_bias=False, o_bias=False, mlp_bias=False, post_norm=False)
    path = Path(write_synth(str(folder), q_norm=q_norm, **flags))
    text = path.read_text(encoding="utf-8")
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return str(path)


FINAL_CONFIG = (
    "self.norm = SynthRMSNorm(config.hidden_size)",
    "self.norm = SynthRMSNorm(config.hidden_size, eps=config.rms_norm_eps)",
)
INPUT_LITERAL = (
    "self.input_layernorm = SynthRMSNorm(config.hidden_size)",
    "self.input_layernorm = SynthRMSNorm(config.hidden_size, eps=1e-5)",
)
POST_LITERAL = (
    "self.post_attention_layernorm = SynthRMSNorm(config.hidden_size)",
    "self.post_attention_layernorm = SynthRMSNorm(config.hidden_size, 1e-5)",
)


def test_every_norm_at_its_class_default_is_no_layer_eps(tmp_path):
    features = analyze(_synth(tmp_path))
    assert features.norm.eps_sources == {
        "block": "class default 1e-06",
        "final": "class default 1e-06",
    }
    assert features.norm.layer_eps is None


def test_literal_block_norms_beside_a_config_final_norm(tmp_path):
    features = analyze(_synth(tmp_path, FINAL_CONFIG, INPUT_LITERAL, POST_LITERAL))
    assert features.norm.eps_sources == {"block": "literal 1e-05", "final": "config.rms_norm_eps"}
    assert features.norm.layer_eps == 1e-5
    assert (features.norm.eps, features.norm.eps_field) == (None, "rms_norm_eps")


def test_literal_block_norms_at_the_config_default_beside_a_config_final_norm(tmp_path):
    """`eps=1e-6` in the layers, `eps=config.rms_norm_eps` (default 1e-6) at the final norm:
    built with equal arguments, each norm is still read at its own site."""
    at_default = [
        (old, old.replace(")", ", eps=1e-6)")) for old, _ in (INPUT_LITERAL, POST_LITERAL)
    ]
    features = analyze(_synth(tmp_path, FINAL_CONFIG, *at_default))
    assert features.norm.eps_sources == {"block": "literal 1e-06", "final": "config.rms_norm_eps"}
    assert features.norm.layer_eps == 1e-6
    sites = features.evidence["norm.eps_sources"]
    assert re.fullmatch(r"block modeling_synth\.py:\d+, modeling_synth\.py:\d+; final \S+", sites)


def test_block_norms_of_two_sources_are_no_layer_eps(tmp_path):
    post_config = (POST_LITERAL[0], POST_LITERAL[0].replace(")", ", config.rms_norm_eps)"))
    features = analyze(_synth(tmp_path, FINAL_CONFIG, INPUT_LITERAL, post_config))
    assert features.norm.eps_sources["block"] == "literal 1e-05 | config.rms_norm_eps"
    assert features.norm.layer_eps is None


def block_local(*bindings: str, argument: str = "eps=eps") -> tuple[tuple[str, str], ...]:
    """Edits binding a local in the decoder layer's `__init__` (`bindings`: its lines, at the
    body's indentation) and building both block norms with it (`argument`)."""
    lead = "".join(f"{line}\n        " for line in bindings)
    return (
        (INPUT_LITERAL[0], lead + INPUT_LITERAL[0].replace(")", f", {argument})")),
        (POST_LITERAL[0], POST_LITERAL[0].replace(")", f", {argument})")),
    )


ONCE_IN_EACH_BRANCH = (
    "if config.tie_word_embeddings:",
    "    eps = 1e-5",
    "else:",
    "    eps = 1e-5",
)
FOLLOWED = {  # the local's bindings, the argument, the block norms' source
    "config_field": (("eps = config.rms_norm_eps",), "eps=eps", "config.rms_norm_eps"),
    "literal": (("eps = 1e-5",), "eps=eps", "literal 1e-05"),
    "positional": (("eps = 1e-5",), "eps", "literal 1e-05"),
    "annotated": (("eps: float = 1e-5",), "eps=eps", "literal 1e-05"),
    "chained": (("norm_eps = 1e-5", "eps = norm_eps"), "eps=eps", "literal 1e-05"),
    "getattr_field": (
        ('eps = getattr(config, "rms_norm_eps", 1e-5)',),
        "eps=eps",
        "config.rms_norm_eps",
    ),
    "getattr_default": (
        ('eps = getattr(config, "norm_epsilon", 1e-5)',),
        "eps=eps",
        "literal 1e-05",
    ),
    "same_in_each_branch": (ONCE_IN_EACH_BRANCH, "eps=eps", "literal 1e-05"),
}


@pytest.mark.parametrize("case", sorted(FOLLOWED))
def test_an_epsilon_from_a_local_is_read_from_its_binding(tmp_path, case):
    """`eps = config.X` or `eps = 1e-5` earlier in `__init__`: the norms' source is the
    local's; one at a number beside a config-read final norm is the layer norms' own."""
    bindings, argument, said = FOLLOWED[case]
    features = analyze(_synth(tmp_path, FINAL_CONFIG, *block_local(*bindings, argument=argument)))
    assert features.norm.eps_sources == {"block": said, "final": "config.rms_norm_eps"}
    assert features.norm.layer_eps == (1e-5 if said.startswith("literal") else None)
    assert features.norm.eps_field == "rms_norm_eps"


def test_a_module_constant_is_read_as_the_number_it_is(tmp_path):
    constant = ("class SynthRMSNorm(nn.Module):", "EPS = 1e-5\n\n\nclass SynthRMSNorm(nn.Module):")
    features = analyze(_synth(tmp_path, FINAL_CONFIG, constant, *block_local(argument="eps=EPS")))
    assert features.norm.eps_sources["block"] == "literal 1e-05"
    assert features.norm.layer_eps == 1e-5


UNREAD = {  # the local's bindings: it may hold the config's epsilon or the code's
    "bound_twice": (
        "eps = 1e-5",
        "if config.tie_word_embeddings:",
        "    eps = config.rms_norm_eps",
    ),
    "conditional": ("eps = config.rms_norm_eps if config.tie_word_embeddings else 1e-5",),
    "augmented": ("eps = 1e-5", "eps *= 2"),
    "unpacked": ("eps, _ = 1e-5, None",),
}


@pytest.mark.parametrize("case", sorted(UNREAD))
def test_a_local_no_reading_follows_stays_other(tmp_path, case):
    features = analyze(_synth(tmp_path, FINAL_CONFIG, *block_local(*UNREAD[case])))
    assert features.norm.eps_sources["block"] == "other"
    assert features.norm.layer_eps is None


def test_a_parameter_is_its_callers_to_say(tmp_path):
    """A norm built from a parameter of the function building it stays "other": decided
    where the function is called, not here."""
    signature = (
        "class SynthDecoderLayer(nn.Module):\n    def __init__(self, config, layer_idx):",
        "class SynthDecoderLayer(nn.Module):\n    def __init__(self, config, layer_idx, eps=1e-5):",
    )
    features = analyze(_synth(tmp_path, FINAL_CONFIG, signature, *block_local()))
    assert features.norm.eps_sources["block"] == "other"
    assert features.norm.layer_eps is None


LAYER_SIGNATURE = "class SynthDecoderLayer(nn.Module):\n    def __init__(self, config, layer_idx):"
LAYER_CALL = "[SynthDecoderLayer(config, i) for i in range(config.num_hidden_layers)]"
FILLED_IN = {  # the rebinding, the layer's parameter, the caller's call, the block norms' source
    "or_nothing_passed": ("eps = eps or 1e-5", "eps=None", LAYER_CALL, "literal 1e-05"),
    "or_config_passed": (
        "eps = eps or 1e-5",
        "eps=None",
        LAYER_CALL.replace("(config, i)", "(config, i, eps=config.rms_norm_eps)"),
        "config.rms_norm_eps",
    ),
    "or_positional": (
        "eps = eps or 1e-6",
        "eps=None",
        LAYER_CALL.replace("(config, i)", "(config, i, config.rms_norm_eps)"),
        "config.rms_norm_eps",
    ),
    "or_literal_passed": (
        "eps = eps or 1e-6",
        "eps=None",
        LAYER_CALL.replace("(config, i)", "(config, i, eps=1e-5)"),
        "literal 1e-05",
    ),
    "or_none_passed": (
        "eps = eps or 1e-5",
        "eps=1e-6",
        LAYER_CALL.replace("(config, i)", "(config, i, eps=None)"),
        "literal 1e-05",
    ),
    "or_own_default": ("eps = eps or 1e-6", "eps=1e-5", LAYER_CALL, "literal 1e-05"),
    "is_not_none_nothing_passed": (
        "eps = eps if eps is not None else 1e-5",
        "eps=None",
        LAYER_CALL,
        "literal 1e-05",
    ),
    "if_none_statement": (
        ("if eps is None:", "    eps = 1e-5"),
        "eps=None",
        LAYER_CALL,
        "literal 1e-05",
    ),
    "if_not_statement_config_passed": (
        ("if not eps:", "    eps = 1e-5"),
        "eps=None",
        LAYER_CALL.replace("(config, i)", "(config, i, eps=config.rms_norm_eps)"),
        "config.rms_norm_eps",
    ),
    "is_none_config_passed": (
        "eps = 1e-5 if eps is None else eps",
        "eps=None",
        LAYER_CALL.replace("(config, i)", "(config, i, eps=config.rms_norm_eps)"),
        "config.rms_norm_eps",
    ),
}


@pytest.mark.parametrize("case", sorted(FILLED_IN))
def test_a_parameter_filled_in_when_not_passed_reads_the_callers_argument(tmp_path, case):
    """`eps = eps or 1e-5` in the layer's `__init__`: the layer's construction call decides,
    through the argument it passes (read where the call is), else the number filled in."""
    rebinding, parameter, call, said = FILLED_IN[case]
    signature = (LAYER_SIGNATURE, LAYER_SIGNATURE.replace("layer_idx)", f"layer_idx, {parameter})"))
    lines = (rebinding,) if isinstance(rebinding, str) else rebinding
    edits = (signature, (LAYER_CALL, call), *block_local(*lines))
    features = analyze(_synth(tmp_path, FINAL_CONFIG, *edits))
    assert features.norm.eps_sources == {"block": said, "final": "config.rms_norm_eps"}
    assert features.norm.layer_eps == (1e-5 if said.startswith("literal") else None)


def test_qk_norms_at_the_layer_norms_constant_take_their_own_eps(tmp_path):
    """The package's q/k norms read `norm_eps`, the final norm's field once the layer norms
    are at a constant: q/k norms at the class's 1e-6 need an epsilon of their own."""
    features = analyze(_synth(tmp_path, FINAL_CONFIG, INPUT_LITERAL, POST_LITERAL, q_norm=True))
    assert features.norm.eps_sources["qk"] == "class default 1e-06"
    assert features.norm.layer_eps == 1e-5
    assert features.attention.qk_norm_eps == {"field": None, "value": 1e-6}
    assert "the final norm's is another" in features.evidence["attention.qk_norm_eps"]


def test_qk_norms_reading_the_final_norms_field_keep_norm_eps(tmp_path):
    qk_config = [
        (
            f"self.{n} = SynthRMSNorm(self.head_dim)",
            f"self.{n} = SynthRMSNorm(self.head_dim, eps=config.rms_norm_eps)",
        )
        for n in ("q_norm", "k_norm")
    ]
    features = analyze(
        _synth(tmp_path, FINAL_CONFIG, INPUT_LITERAL, POST_LITERAL, *qk_config, q_norm=True)
    )
    assert features.norm.eps_sources["qk"] == "config.rms_norm_eps"
    assert features.attention.qk_norm_eps is None
