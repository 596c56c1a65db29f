"""Config switches found statically (issue 8): installed architectures, renamed copies, one
hand-written snippet per idiom, and hypothesis properties over field names and idioms.

Evidence is checked against the files themselves: every cited line must be a line of the
cited file that names the field (or the attribute / local it reaches the branch through), and
for the key switches the cited lines are found by searching the installed source text, not
written down here.
"""

from __future__ import annotations

import json
import keyword
import os
import re
import tempfile
import textwrap

import pytest
from analyze_helpers import rename_model, unrename
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codegen.analyze.analysis import analyze
from codegen.analyze.locate import model_type_files
from codegen.analyze.switches import Switch, switches_of_file
from codegen.cli import main

# model_type -> {switch name: value tests that must be among the switch's values}
EXPECTED: dict[str, dict[str, set[str]]] = {
    "deepseek_v3": {
        "q_lora_rank": {"none", "set"},
        "attention_bias": {"true", "false"},
        "first_k_dense_replace": {"cmp"},
        "norm_topk_prob": {"true", "false"},
        "rope_interleave": {"true", "false"},
        "tie_word_embeddings": {"true", "false"},
    },
    "deepseek_v2": {
        "q_lora_rank": {"none", "set"},
        "topk_method": {"eq"},
        "mlp_bias": {"true", "false"},
    },
    "qwen2": {
        "use_sliding_window": {"true", "false"},
        "sliding_window": {"none", "set"},
        "layer_types": {"layers"},
        "tie_word_embeddings": {"true", "false"},
    },
    "qwen3_moe": {
        "mlp_only_layers": {"empty", "nonempty"},
        "decoder_sparse_step": {"cmp"},
        "norm_topk_prob": {"true", "false"},
        "use_sliding_window": {"true", "false"},
        "attention_bias": {"true", "false"},
    },
    "stablelm": {
        "use_qkv_bias": {"true", "false"},
        "qk_layernorm": {"true", "false"},
        "use_parallel_residual": {"true", "false"},
        "rope_parameters.partial_rotary_factor": {"cmp"},
    },
    "llama": {
        "attention_bias": {"true", "false"},
        "mlp_bias": {"true", "false"},
        "tie_word_embeddings": {"true", "false"},
    },
    "olmo": {"clip_qkv": {"none", "set"}, "attention_bias": {"true", "false"}},
    "olmoe": {"clip_qkv": {"none", "set"}, "norm_topk_prob": {"true", "false"}},
    "phi3": {
        "rope_parameters.partial_rotary_factor": {"cmp"},
        "sliding_window": {"none", "set"},
    },
    "cohere": {"use_qk_norm": {"true", "false"}},
    "glm4_moe": {
        "use_qk_norm": {"true", "false"},
        "first_k_dense_replace": {"cmp"},
        "norm_topk_prob": {"true", "false"},
    },
    "gpt_neox": {
        "use_parallel_residual": {"true", "false"},
        "attention_bias": {"true", "false"},
        "rope_parameters.partial_rotary_factor": {"cmp"},
    },
    "gemma2": {
        "final_logit_softcapping": {"none", "set"},
        "attn_logit_softcapping": {"none", "set"},  # passed as softcap= to a function
        "layer_types": {"layers"},
    },
    "falcon": {
        "parallel_attn": {"true", "false"},
        "new_decoder_architecture": {"true", "false"},
        "bias": {"true", "false"},
    },
    "starcoder2": {"use_bias": {"true", "false"}},
    "mixtral": {"sliding_window": {"none", "set"}},
}


def _by_name(switches) -> dict[str, Switch]:
    return {s.name: s for s in switches}


def _folder(model_type: str) -> str:
    return os.path.dirname(model_type_files(model_type)[0])


def _line(folder: str, cite: str) -> str:
    name, number = cite.rsplit(":", 1)
    with open(os.path.join(folder, name), encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    number = int(number)
    assert 1 <= number <= len(lines), cite
    return lines[number - 1]


def _names_of(switch: Switch) -> set[str]:
    """The field and every attribute / local name it reaches a branch through."""
    names = {switch.field}
    for read in switch.reads:
        match = re.search(r"\((?:self\.)?(\w+)\)$", read)
        if match:
            names.add(match.group(1))
    return names


def _lines_matching(folder: str, file: str, pattern: str) -> set[int]:
    with open(os.path.join(folder, file), encoding="utf-8") as fh:
        return {i for i, text in enumerate(fh, 1) if re.search(pattern, text)}


@pytest.fixture(scope="module")
def analysed():
    cache: dict[str, object] = {}

    def get(model_type: str):
        if model_type not in cache:
            cache[model_type] = analyze(model_type)
        return cache[model_type]

    return get


@pytest.mark.parametrize("model_type", sorted(EXPECTED))
def test_installed_architectures_have_their_switches(model_type, analysed) -> None:
    features = analysed(model_type)
    found = _by_name(features.switches)
    for name, tests in EXPECTED[model_type].items():
        assert name in found, f"{model_type}: {name} not found among {sorted(found)}"
        got = {v.test for v in found[name].values}
        assert tests <= got, f"{model_type}.{name}: {sorted(got)}"
    folder = _folder(model_type)
    for switch in features.switches:
        assert switch.values, switch
        names = _names_of(switch)
        for value in switch.values:
            assert value.evidence, (switch.name, value)
            for cite in value.evidence:
                text = _line(folder, cite)
                if switch.field == "tie_word_embeddings":
                    assert "_tied_weights_keys" in text, cite
                else:
                    assert any(n in text for n in names), (switch.name, cite, text)


def test_key_switches_cite_their_branch_lines(analysed) -> None:
    """The cited lines are the branch lines found in the installed source by text search."""
    cases = [
        ("deepseek_v3", "q_lora_rank", "none", r"if self\.q_lora_rank is None:"),
        ("deepseek_v3", "q_lora_rank", "set", r"if self\.q_lora_rank is not None"),
        ("stablelm", "use_parallel_residual", "true", r"if self\.use_parallel_residual:"),
        ("stablelm", "qk_layernorm", "true", r"if self\.qk_layernorm:"),
        ("olmo", "clip_qkv", "set", r"if self\.config\.clip_qkv is not None"),
        ("qwen3_moe", "mlp_only_layers", "nonempty", r"not in config\.mlp_only_layers"),
        ("qwen3_moe", "decoder_sparse_step", "cmp", r"% config\.decoder_sparse_step == 0"),
        ("deepseek_v2", "topk_method", "eq", r'self\.topk_method == "greedy"'),
        ("llama", "attention_bias", "true", r"bias=config\.attention_bias"),
        ("phi3", "rope_parameters.partial_rotary_factor", "cmp", r"int\(head_dim \* partial"),
        ("qwen2", "use_sliding_window", "true", r"if self\.use_sliding_window else"),
        ("llama", "tie_word_embeddings", "true", r"_tied_weights_keys ="),
    ]
    for model_type, name, test, pattern in cases:
        switch = _by_name(analysed(model_type).switches)[name]
        cites = {c for v in switch.values if v.test == test for c in v.evidence}
        files = {c.rsplit(":", 1)[0] for c in cites}
        expected = {
            f"{f}:{n}" for f in files for n in _lines_matching(_folder(model_type), f, pattern)
        }
        assert expected and expected <= cites, (model_type, name, sorted(cites), pattern)


def test_what_each_value_selects(analysed) -> None:
    mla = _by_name(analysed("deepseek_v3").switches)["q_lora_rank"]
    values = {v.test: v for v in mla.values}
    assert "direct q projection" in values["none"].selects
    assert "q_proj" in values["none"].selects
    assert "q_a_proj" in values["set"].selects and "q_b_proj" in values["set"].selects
    moe = _by_name(analysed("deepseek_v2").switches)["topk_method"]
    assert {v.operand for v in moe.values if v.test == "eq"} == {"greedy", "group_limited_greedy"}
    assert not any(v.test == "other" for v in moe.values)  # no else branch
    phi = _by_name(analysed("phi3").switches)["rope_parameters.partial_rotary_factor"]
    assert phi.container == "rope_parameters" and phi.kind == "threshold"
    assert {(v.op, v.operand) for v in phi.values} == {("<", 1), (">=", 1)}
    bias = _by_name(analysed("llama").switches)["attention_bias"]
    true = next(v for v in bias.values if v.test == "true")
    assert "q_proj" in true.selects and "o_proj" in true.selects
    # a flag and-ed with a test, kept on self and read by a ternary later
    # (`self.use_alternative_attention = config.attention_k_eq_v and not self.is_sliding`)
    k_eq_v = _by_name(analysed("gemma4_text").switches)["attention_k_eq_v"]
    values = {v.test: v for v in k_eq_v.values}
    assert "v_proj: None" in values["true"].selects
    assert "v_proj: Linear" in values["false"].selects


def test_non_switches_are_left_out(analysed) -> None:
    """Runtime and bookkeeping tests are not model switches."""
    for model_type in ("llama", "qwen3_moe", "mixtral", "bert"):
        names = set(_by_name(analysed(model_type).switches))
        assert not any(n.startswith("_") for n in names)  # _attn_implementation
        assert "use_cache" not in names and "output_router_logits" not in names
    assert "router_jitter_noise" not in _by_name(analysed("mixtral").switches)  # training only
    assert "num_attention_heads" not in _by_name(analysed("bert").switches)  # a validation


def test_token_types_that_open_a_mask_block_keep_their_switch(analysed) -> None:
    """hrm_text tests `prefix_lm` only where `token_type_ids` are given; those types open
    the mask's prefix block, which a package takes, so `prefix_lm` is a setting verify runs."""
    names = _by_name(analysed("hrm_text").switches)
    assert {v.label for v in names["prefix_lm"].values} == {"True", "False"}
    assert {"attention_bias", "mlp_bias", "L_bp_cycles"} <= set(names)


def test_report_section_and_json(capsys) -> None:
    assert main(["analyze", "qwen3_moe"]) == 0
    out = capsys.readouterr().out
    section = out.split("config switches:", 1)[1]
    assert "mlp_only_layers (layer_list" in section
    assert "decoder_sparse_step" in section and "modeling_qwen3_moe.py:" in section
    assert main(["analyze", "qwen3_moe", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)[0]
    switches = {s["field"]: s for s in data["switches"]}
    assert switches["norm_topk_prob"]["kind"] == "bool"
    assert {v["test"] for v in switches["norm_topk_prob"]["values"]} == {"true", "false"}
    assert all(v["evidence"] for s in data["switches"] for v in s["values"])


# -- renamed copies ---------------------------------------------------------------------------

RENAMED = ["stablelm", "olmo", "olmoe", "deepseek_v2", "glm4_moe", "mixtral"]


@pytest.mark.parametrize("model_type", RENAMED)
def test_renamed_copy_has_the_same_switches(model_type, tmp_path, analysed) -> None:
    original = [json.loads(json.dumps(s, default=vars)) for s in _plain(analysed(model_type))]
    copy_path, back = rename_model(model_type, "zorblax", str(tmp_path))
    renamed = unrename(_plain(analyze(copy_path)), back)
    assert renamed == original
    assert {s["field"] for s in renamed} >= {n.split(".")[-1] for n in EXPECTED.get(model_type, {})}


def _plain(features) -> list:
    return features.to_dict()["switches"]


# -- hand-written snippets, one idiom each ------------------------------------------------------

CONFIG = """
from transformers.configuration_utils import PreTrainedConfig


class SnipConfig(PreTrainedConfig):
    model_type = "snip"
    hidden_size: int = 64
    num_hidden_layers: int = 4
    use_gate_norm: bool = False
    low_rank: int | None = None
    proj_bias: bool = True
    mixer_kind: str = "plain"
    dense_layers: list[int] | None = None
    soft_cap: float | None = None
    every_n: int = 1
    rotary_part: float = 1.0
    block_kinds: list[str] | None = None
    train_noise: float = 0.0
    score_cap: float | None = None
    gate_kind: str = "soft"
"""

SNIPPET = """
import torch
from torch import nn

from .configuration_snip import SnipConfig

TABLE = {"plain": None}


def capped(x, cap=None):
    if cap is not None:  # L:param
        x = torch.tanh(x / cap) * cap
    return x


class SnipBlock(nn.Module):
    def __init__(self, config: SnipConfig, layer_idx: int):
        super().__init__()
        self.use_gate_norm = config.use_gate_norm
        if self.use_gate_norm:  # L:indirect
            self.gate_norm = nn.LayerNorm(config.hidden_size)
        self.low_rank = config.low_rank
        self.down = (
            nn.Linear(config.hidden_size, self.low_rank)
            if self.low_rank is not None  # L:ternary
            else None
        )
        self.proj = nn.Linear(64, 64, bias=config.proj_bias)  # L:bias
        cap = getattr(config, "soft_cap", None)
        if cap is not None:  # L:getattr
            self.cap = cap
        if (layer_idx + 1) % config.every_n == 0:  # L:step
            self.sparse = nn.Linear(64, 64)
        dim = int(config.hidden_size * config.rotary_part)  # L:fraction
        self.kind = config.block_kinds[layer_idx]
        if self.kind == "wide":  # L:perlayer
            self.wide = nn.Linear(64, 128)
        self.noise = config.train_noise
        self.score_cap = config.score_cap
        self.hard_gate = config.gate_kind == "hard"  # L:derivedset
        if getattr(config, "not_a_field", False):  # L:unknown
            self.never = nn.Linear(1, 1)
        if config._attn_implementation == "eager":  # L:private
            self.eager = True
        if config.hidden_size % 2 != 0:  # L:validation
            raise ValueError("odd")
        self.dim = dim

    def forward(self, x):
        if self.training and self.noise > 0:  # L:training
            x = x + torch.randn_like(x)
        x = capped(x, cap=self.score_cap)
        if self.hard_gate:  # L:derived
            x = torch.sign(x)
        if x.shape[1] > self.low_rank_len():
            x = x
        return x

    def low_rank_len(self):
        return 1


class SnipModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.layers = nn.ModuleList(
            [SnipBlock(config, i) for i in range(config.num_hidden_layers)]
        )
        self.dense = [
            i for i in range(config.num_hidden_layers) if i in config.dense_layers  # L:comp
        ]
        self.config = config

    def forward(self, x):
        if self.config.mixer_kind == "fancy":  # L:choice
            x = x * 2
        else:
            x = x + 1
        if self.config.mixer_kind != "plain":  # L:registry
            fn = TABLE[self.config.mixer_kind]
            x = fn(x)
        for layer in self.layers:
            x = layer(x)
        return x
"""


def _write(folder: str, modeling: str, config: str = CONFIG) -> str:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "configuration_snip.py"), "w", encoding="utf-8") as fh:
        fh.write(textwrap.dedent(config))
    path = os.path.join(folder, "modeling_snip.py")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(textwrap.dedent(modeling))
    return path


def _marks(text: str) -> dict[str, int]:
    return {m.group(1): text[: m.start()].count("\n") + 1 for m in re.finditer(r"# L:(\w+)", text)}


@pytest.fixture(scope="module")
def snippet():
    with tempfile.TemporaryDirectory() as folder:
        path = _write(folder, SNIPPET)
        yield _by_name(switches_of_file(path)), _marks(textwrap.dedent(SNIPPET))


def _cites(switch: Switch, test: str | None = None) -> set[int]:
    return {
        int(c.rsplit(":", 1)[1])
        for v in switch.values
        if test is None or v.test == test
        for c in v.evidence
    }


@pytest.mark.parametrize(
    "name, mark, tests, kind",
    [
        ("use_gate_norm", "indirect", {"true", "false"}, "bool"),
        ("low_rank", "ternary", {"none", "set"}, "optional"),
        ("proj_bias", "bias", {"true", "false"}, "bool"),
        ("soft_cap", "getattr", {"none", "set"}, "optional"),
        ("every_n", "step", {"cmp"}, "number"),
        ("rotary_part", "fraction", {"cmp"}, "threshold"),
        ("block_kinds", "perlayer", {"layers"}, "per_layer"),
        ("dense_layers", "comp", {"empty", "nonempty"}, "layer_list"),
        ("mixer_kind", "choice", {"eq", "other"}, "choice"),
        ("score_cap", "param", {"none", "set"}, "optional"),
        ("gate_kind", "derived", {"eq", "other"}, "choice"),
    ],
)
def test_each_idiom_is_found(snippet, name, mark, tests, kind) -> None:
    switches, marks = snippet
    assert name in switches, sorted(switches)
    switch = switches[name]
    assert {v.test for v in switch.values} == tests
    assert switch.kind == kind
    assert marks[mark] in _cites(switch)
    assert all(c.startswith("modeling_snip.py:") for v in switch.values for c in v.evidence)


def test_idiom_details(snippet) -> None:
    switches, marks = snippet
    kinds = switches["mixer_kind"]
    assert {v.operand for v in kinds.values if v.test == "eq"} == {"fancy", "plain"}
    others = [v for v in kinds.values if v.test == "other"]
    assert len(others) == 1 and others[0].operand == "TABLE"  # `!=` branch indexes TABLE
    assert {marks["choice"], marks["registry"]} <= _cites(kinds, "other")
    step = switches["every_n"]
    assert {(v.op, v.operand) for v in step.values} == {("==", 1), (">", 1)}
    part = switches["rotary_part"]
    assert {(v.op, v.operand) for v in part.values} == {("<", 1), (">=", 1)}
    assert next(v for v in switches["block_kinds"].values).operand == "wide"
    gate = next(v for v in switches["use_gate_norm"].values if v.test == "true")
    assert "gate_norm" in gate.selects
    assert any("self.use_gate_norm" in r for r in switches["use_gate_norm"].reads)
    bias = next(v for v in switches["proj_bias"].values if v.test == "true")
    assert bias.selects == "bias on proj"
    # through `self.score_cap = config.score_cap`, then `capped(x, cap=self.score_cap)`
    cap = switches["score_cap"]
    assert any(r.endswith("(cap)") for r in cap.reads)
    assert "tanh" in next(v for v in cap.values if v.test == "set").selects
    # a test stored in an attribute (`self.hard_gate = config.gate_kind == "hard"`) is a test
    # where it is made and where the attribute is tested
    gate = switches["gate_kind"]
    assert {marks["derivedset"], marks["derived"]} <= _cites(gate, "eq")
    hard = next(v for v in gate.values if v.test == "eq")
    assert hard.operand == "hard" and "sign" in hard.selects and "hard_gate = True" in hard.selects
    assert any(r.endswith("(self.hard_gate)") for r in gate.reads)


def test_what_is_not_a_switch(snippet) -> None:
    switches, _ = snippet
    assert "not_a_field" not in switches  # not a field of the config: always its default
    assert not any(n.startswith("_") for n in switches)  # implementation selector
    assert "hidden_size" not in switches  # only tested in a validation that raises
    assert "train_noise" not in switches  # only tested while training
    assert "num_hidden_layers" not in switches  # used, never tested


def test_the_snippet_is_never_executed(tmp_path) -> None:
    boom = SNIPPET.replace("import torch\n", "import torch\nraise SystemExit('executed')\n", 1)
    path = _write(str(tmp_path), boom)
    assert "proj_bias" in _by_name(switches_of_file(path))


# -- properties ---------------------------------------------------------------------------------

_MARK = "  # L:x"
IDIOMS = {
    # idiom -> (config annotation, lines of __init__ (`{f}` = field), value tests)
    "truthy_bool": (
        "bool = False",
        ["if config.{f}:" + _MARK, "    self.a = nn.Linear(1, 1)"],
        {"true", "false"},
    ),
    "is_none": (
        "int | None = None",
        ["if config.{f} is None:" + _MARK, "    self.a = None"],
        {"none", "set"},
    ),
    "indirect": (
        "bool = True",
        ["self.{f} = config.{f}", "if not self.{f}:" + _MARK, "    self.a = None"],
        {"true", "false"},
    ),
    "string": (
        "str = 'a'",
        ["if config.{f} == 'b':" + _MARK, "    self.a = None", "else:", "    self.a = 1"],
        {"eq", "other"},
    ),
    "threshold": (
        "float = 1.0",
        ["if config.{f} < 0.5:" + _MARK, "    self.a = None"],
        {"cmp"},
    ),
    "keyword": (
        "bool = False",
        ["self.a = nn.Linear(1, 1, bias=config.{f})" + _MARK],
        {"true", "false"},
    ),
    "getattr": (
        "bool = False",
        ["if getattr(config, '{f}', False):" + _MARK, "    self.a = None"],
        {"true", "false"},
    ),
    "ternary": (
        "int | None = None",
        ["self.a = 1 if config.{f} is not None else 2" + _MARK],
        {"none", "set"},
    ),
    "alias": (
        "int | None = None",
        ["r = config.{f}", "if r is None:" + _MARK, "    self.a = None"],
        {"none", "set"},
    ),
}

_KEYWORDS = set(keyword.kwlist) | set(keyword.softkwlist)  # `as` made invalid source
field_names = st.from_regex(r"[a-z][a-z0-9_]{0,12}", fullmatch=True).filter(
    lambda s: s not in _KEYWORDS and s not in ("config", "self", "r", "model_type")
)


PROP_CONFIG = """
from transformers.configuration_utils import PreTrainedConfig


class SnipConfig(PreTrainedConfig):
    model_type = "snip"
    {field}: {annotation}
"""


def _module(field: str, idiom: str) -> tuple[str, str, int]:
    annotation, lines, _ = IDIOMS[idiom]
    config = PROP_CONFIG.format(field=field, annotation=annotation)
    body = "\n        ".join(lines).format(f=field)
    modeling = (
        "import torch\nfrom torch import nn\n\n\n"
        "class Thing(nn.Module):\n"
        "    def __init__(self, config):\n"
        "        super().__init__()\n"
        f"        {body}\n"
    )
    line = _marks(modeling)["x"]
    return config, modeling, line


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=field_names, idiom=st.sampled_from(sorted(IDIOMS)))
def test_any_field_name_any_idiom(field: str, idiom: str) -> None:
    """Detection depends on the code's shape, not on the field's name."""
    config, modeling, line = _module(field, idiom)
    with tempfile.TemporaryDirectory() as folder:
        switches = _by_name(switches_of_file(_write(folder, modeling, config)))
    assert set(switches) == {field}, (idiom, sorted(switches))
    switch = switches[field]
    assert {v.test for v in switch.values} == IDIOMS[idiom][2]
    assert line in _cites(switch)


@settings(max_examples=15, deadline=None)
@given(field=field_names, idiom=st.sampled_from(sorted(IDIOMS)))
def test_a_field_missing_from_the_config_is_no_switch(field: str, idiom: str) -> None:
    """`getattr(config, "x", d)` of a field the config does not declare always gives `d`."""
    _, modeling, _ = _module(field, idiom)
    config = PROP_CONFIG.format(field=field + "_other", annotation="bool = False")
    with tempfile.TemporaryDirectory() as folder:
        switches = _by_name(switches_of_file(_write(folder, modeling, config)))
    assert field not in switches


def test_two_fields_compared_while_building_are_a_relation_switch(tmp_path) -> None:
    """`if config.embed_width != config.hidden_size:` builds projections between the two
    widths (OPT's project_in / project_out): a switch on embed_width, equal or not to
    hidden_size; the same comparison at run time (forward) is about data, no switch."""
    config = CONFIG.replace(
        "hidden_size: int = 64", "hidden_size: int = 64\n    embed_width: int = 64"
    )
    modeling = textwrap.dedent(
        """
        from torch import nn


        class Thing(nn.Module):
            def __init__(self, config):
                super().__init__()
                if config.embed_width != config.hidden_size:  # L:x
                    self.project_in = nn.Linear(config.embed_width, config.hidden_size)
                self.config = config

            def forward(self, x):
                if self.config.num_hidden_layers == self.config.hidden_size:
                    x = x * 2
                return x
        """
    )
    switches = _by_name(switches_of_file(_write(str(tmp_path), modeling, config)))
    assert set(switches) == {"embed_width"}
    values = {v.test: v for v in switches["embed_width"].values}
    assert set(values) == {"same", "differs"}
    assert values["same"].operand == values["differs"].operand == "hidden_size"
    assert values["differs"].label == "!= hidden_size"
    assert "project_in" in values["differs"].selects
    assert _marks(modeling)["x"] in _cites(switches["embed_width"], "differs")


def test_a_config_property_is_scanned_like_post_init(tmp_path) -> None:
    """gemma4_unified's layers read `config.kv_sharing_modes`, a property of the config
    class that branches on `num_kv_shared_layers`: that field is a switch (so a package
    refuses the other setting in one line), on a renamed copy too."""
    modeling, _ = rename_model("gemma4_unified", "wallaby", str(tmp_path))
    for source in ("gemma4_unified_text", modeling):
        names = {s.name for s in analyze(source).switches}
        assert "num_kv_shared_layers" in names, sorted(names)


def test_an_entry_of_a_number_list_tested_for_truth_is_a_per_layer_switch(tmp_path) -> None:
    """A layer's entry of a number list read where a 0 selects the other side (a RoPE base
    per layer, `table if base else None`: no RoPE on that layer) is a per-layer switch whose
    value is 0 on some layers, cited at the test and described by what 0 selects."""
    config = CONFIG.replace(
        "hidden_size: int = 64", "hidden_size: int = 64\n    layer_bases: list[float] | None = None"
    )
    modeling = textwrap.dedent(
        """
        from torch import nn


        class Thing(nn.Module):
            def __init__(self, config):
                super().__init__()
                self.config = config

            def forward(self, x, tables):
                for i in range(self.config.num_hidden_layers):
                    base = self.config.layer_bases[i]
                    table = tables[base] if base else None  # L:x
                    x = x + (0 if table is None else table)
                return x
        """
    )
    switches = _by_name(switches_of_file(_write(str(tmp_path), modeling, config)))
    switch = switches["layer_bases"]
    assert switch.kind == "per_layer"
    (value,) = switch.values
    assert (value.test, value.operand, value.label) == ("layers", 0, "layers 0")
    assert value.selects.endswith("None")
    assert _marks(modeling)["x"] in _cites(switch, "layers")
