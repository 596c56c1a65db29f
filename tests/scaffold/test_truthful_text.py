"""What a generated package says is about its target (issue 8, "text that tells the truth").

Each target is scaffolded from its closest reference. Then: no reference's name, tagline,
config class or error prefix appears in any file; no comment or docstring names a field of
a reference's HF config that the target's config class lacks; the package summary
describes the config class defaults (a feature they leave off is only "configurable"); the
values the docstrings cite for config fields are the config class defaults (not the toy
verify runs); and ModelArgs() equals `from_hf_config(ConfigClass())`, field by field.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import re
from pathlib import Path

import pytest

from codegen.analyze.reference import ORDER
from codegen.cli import main
from codegen.models import references_dir
from codegen.quality.prose import code_names, prose, said_names
from codegen.scaffold.standalone import VENDORED

# neighbours of every reference: llama (gemma2, phi3, olmo2, mistral), qwen2 (starcoder2),
# qwen3_moe (mixtral), deepseek_v3 (deepseek_v2); qwen3 is the source of qwen3_moe (--from)
SOURCES = {"qwen3_moe": "qwen3"}
TARGETS = (
    "mixtral",
    "deepseek_v2",
    "gemma2",
    "phi3",
    "olmo2",
    "mistral",
    "starcoder2",
    "qwen3_moe",
    "glm4",
    "olmoe",
    "stablelm",
)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _forbidden(reference: str, target: str = "") -> list[re.Pattern]:
    """The spellings of a reference: `qwen3_moe`, `Qwen3-MoE`, `Qwen3MoeConfig`, `Llama...`
    (for target qwen3_moe, `Qwen3MoeConfig` is its own, not qwen3's)."""
    spaced = r"[-_ ]?".join(re.escape(part) for part in re.split(r"_", reference))
    words = [re.compile(rf"\b{spaced}\b", re.IGNORECASE)]
    # a class of the reference's HF family: LlamaConfig, Qwen3MoeDecoderLayer, DeepseekV3...
    own, camel = _camel(target), _camel(reference)
    longer = own[len(camel) :] if own.startswith(camel) and own != camel else ""
    words.append(re.compile(rf"\b{camel}" + (f"(?!{longer})" if longer else "") + "[A-Z_]"))
    return words


def _tagline(reference: str) -> str:
    text = (references_dir() / reference / "__init__.py").read_text()
    first = ast.get_docstring(ast.parse(text)).split("\n\n")[0]
    return " ".join(first.split(":", 1)[1].split())


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("truthful")
    for target in TARGETS:
        source = ["--from", SOURCES[target]] if target in SOURCES else []
        assert main(["scaffold", target, *source, "--out", str(out)]) == 0, target
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_no_reference_name_tagline_or_config_class_survives(models, target):
    foreign = [ref for ref in ORDER if ref != target]
    taglines = {ref: _tagline(ref) for ref in ORDER}
    for path in sorted((models / target).glob("*.py")):
        text = path.read_text()
        flat = " ".join(text.split())
        for ref in foreign:
            for pattern in _forbidden(ref, target):
                found = pattern.search(text)
                assert found is None, f"{path.name}: {found[0]!r} names the {ref} reference"
            assert taglines[ref] not in flat, f"{path.name}: the {ref} tagline"
        # an error message names the package, never a reference
        for prefix in re.findall(r'f?"(\w+): ', text):
            assert prefix not in foreign, f"{path.name}: error prefix {prefix!r}"


@pytest.mark.parametrize("module", sorted(VENDORED))
def test_shared_layers_name_no_reference(module):
    """What scaffold copies into every package verbatim must be model-neutral (a RoPE kind
    such as `llama3` is a name of the kind, not of the reference)."""
    path = Path(importlib.import_module(module).__file__)
    text = path.read_text()
    for ref in ORDER:
        for pattern in _forbidden(ref):
            found = pattern.search(text)
            assert found is None, f"{path.name}: {found[0]!r} names the {ref} reference"


def _config_class(target: str):
    from transformers import AutoConfig

    return type(AutoConfig.for_model(target))


def _cited_values(docstring: str) -> list[tuple[str, object]]:
    """`config:sliding_window=4096` -> ("sliding_window", 4096), over the docstring."""
    flat = " ".join(docstring.split())
    cited = []
    for path, text in re.findall(r"config:([\w.]+)=('[^']*'|[^;) ]+)", flat):
        if not text.endswith("..."):
            cited.append((path, ast.literal_eval(text)))
    return cited


def _config_value(config, path: str):
    value = config
    for part in path.split("."):
        value = value[part] if isinstance(value, dict) else getattr(value, part)
    return value


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("filename", ["model.py", "__init__.py"])
def test_docstring_cites_the_config_class_defaults(models, target, filename):
    docstring = ast.get_docstring(ast.parse((models / target / filename).read_text()))
    config = _config_class(target)()
    for path, value in _cited_values(docstring):
        assert _config_value(config, path) == value, f"{target}: config:{path}={value!r}"


def _config_fields(model_type: str) -> set[str]:
    config = _config_class(model_type)()
    return {*config.to_dict(), *vars(config), *type(config).attribute_map}


@pytest.mark.parametrize("target", TARGETS)
def test_prose_names_no_config_field_the_target_lacks(models, target):
    """A reference's prose speaks of its HF config (`num_nextn_predict_layers`,
    `max_window_layers`); where the target's config class has no such field it is false.
    A name the package's own code uses (`head_dim`, `num_experts`) is the package's word."""
    foreign = set().union(*(_config_fields(ref) for ref in ORDER)) - _config_fields(target)
    files = sorted((models / target).glob("*.py"))
    used = set().union(*(code_names(path.read_text()) for path in files))
    for path in files:
        for line, said in prose(path.read_text()):
            named = said_names(said) & foreign - used
            assert not named, f"{target}/{path.name}:{line} names {sorted(named)}: {said!r}"


@pytest.mark.parametrize(
    ("target", "configurable", "not_said"),
    [
        ("mixtral", "sliding window", "(sliding window"),  # MixtralConfig: sliding_window=None
        ("qwen3_moe", "sliding window", "(QK-norm, sliding window"),  # use_sliding_window=False
        ("gemma2", "", "configurable: sliding window"),  # a real window pattern by default
        # StableLmConfig: 32 kv heads of 32; qk_layernorm is refused (FIXED_SETTINGS), so
        # QK-norm is no feature of the package, not even a configurable one
        ("stablelm", "gqa attention", "QK-norm"),
    ],
)
def test_summary_describes_the_config_class_defaults(models, target, configurable, not_said):
    summary = ast.get_docstring(ast.parse((models / target / "__init__.py").read_text()))
    tagline = " ".join(summary.split("\n\n")[0].split())
    assert not_said not in tagline, tagline
    if configurable:
        assert f"configurable: {configurable}" in tagline or f", {configurable}." in tagline


def test_summary_cites_only_what_the_defaults_have(models):
    """The summary's evidence is the analysis under the config class defaults: no toy
    value (mixtral's toy window is 8) and the window only as a switch of the package."""
    summary = ast.get_docstring(ast.parse((models / "mixtral" / "__init__.py").read_text()))
    flat = " ".join(summary.split())
    assert "As MixtralConfig's defaults configure it" in flat
    assert (
        "sliding window: off by default; on with sliding_window set (modeling_mixtral.py:" in flat
    )
    assert "sliding_window = None by default" in flat
    assert "sliding_window=8" not in flat


@pytest.mark.parametrize("target", TARGETS)
def test_switch_lines_read_as_sentences_not_code(models, target):
    """A switch's effect is said in words: no `name: config.field` assignment copied from the
    analysis, and a value that is "used" says what it replaces (mixtral's head_dim)."""
    summary = ast.get_docstring(ast.parse((models / target / "__init__.py").read_text()))
    switches = " ".join(summary.split("Config switches", 1)[-1].split())
    assert not re.search(r"\w: config\.", switches), switches
    assert not re.search(r": used(?! instead of)", switches), switches
    if target == "mixtral":
        assert "head_dim = None by default; set: used instead of config.hidden_size //" in switches


def test_gemma2_docstring_has_the_real_values_not_the_toy(models):
    docstring = ast.get_docstring(ast.parse((models / "gemma2" / "model.py").read_text()))
    flat = " ".join(docstring.split())
    assert "config:sliding_window=4096" in flat
    assert "softcap=50.0" in flat
    assert "x 48)" in flat  # the embedding scale: sqrt(hidden_size 2304)
    for toy in ("sliding_window=8", "softcap=0.25", "9.79796", "head_dim 40"):
        assert toy not in flat
    assert [path for path, _ in _cited_values(docstring)]  # it does cite config values


@pytest.mark.parametrize("target", TARGETS)
def test_model_args_defaults_are_the_config_class_defaults(models, target):
    from codegen.models import load_spec

    args_cls = load_spec(target, models).args
    try:
        mapped = args_cls.from_hf_config(_config_class(target)())
    except (NotImplementedError, ValueError) as err:  # a refused default: nothing to compare
        pytest.skip(f"{target}: the config class defaults are refused ({err})")
    defaults = args_cls()
    for field in dataclasses.fields(args_cls):
        expected, actual = getattr(mapped, field.name), getattr(defaults, field.name)
        if field.name == "rope":
            assert actual.theta == expected.theta, target
        else:
            assert actual == expected, f"{target}: ModelArgs.{field.name}"


@pytest.mark.parametrize(
    ("target", "form", "evidence"),
    [
        ("jetmoe", "gqa attention (mixture of attention heads)", "modeling_jetmoe.py:"),
        ("diffllama", "(differential)", "modeling_diffllama.py:"),
    ],
)
def test_summary_names_attention_forms_the_kind_does_not_say(target, form, evidence):
    """JetMoE's query heads are routed experts over shared keys and values: "gqa attention"
    alone would describe another model (the tagline and its evidence line name the form)."""
    from codegen.scaffold.describe import summary_of
    from codegen.scaffold.target import load_target

    loaded = load_target(target)
    summary = " ".join(summary_of(target, loaded.described, loaded.features).split())
    assert form in summary, summary
    label = form.strip("()").split("(")[-1]
    assert f"- {label}: {evidence}" in summary, summary


def test_a_score_activation_the_package_refuses_is_not_listed_as_built():
    """A router's scoring_func names activations (sqrtsoftplus, relu2): the summary lists
    those args.py accepts (writes as strings), not one it refuses (a router that adds no
    constant to its renormalising sum refuses relu2)."""
    from types import SimpleNamespace

    import libcst as cst

    from codegen.analyze.switches import Switch, SwitchValue
    from codegen.scaffold.describe import _strings, _switch_items

    site = ("modeling_x.py:7",)
    values = tuple(
        SwitchValue(repr(n), "eq", n, selects=f"router scores by ACT2FN[{n!r}]", evidence=site)
        for n in ("sigmoid", "sqrtsoftplus", "relu2")
    ) + (SwitchValue("other (a ACT2FN key)", "other", "ACT2FN", selects="that", evidence=site),)
    switch = Switch("scoring_func", "choice", values, configured="sigmoid", reads=site)
    features = SimpleNamespace(switches=(switch,))
    args = cst.parse_module('score_functions = ("sigmoid", "sqrtsoftplus")\n')
    (line,) = _switch_items(features, {"scoring_func"}, _strings(args))
    assert "'sqrtsoftplus': router scores" in line and "relu2" not in line, line
    (line,) = _switch_items(features, {"scoring_func"})  # no args.py to read: all named
    assert "'relu2': router scores" in line, line
