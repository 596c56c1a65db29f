"""DropKvRepeat: before/after, and on a package scaffolded for a config with no kv-head count."""

import ast

import pytest

from codegen.transforms.drop_kv_repeat import DropKvRepeat
from codegen.transforms.testing import package_of

ARGS = """from dataclasses import dataclass


@dataclass
class ModelArgs:
    n_heads: int = 8
    n_kv_heads: int = 8

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(
            n_heads=hf_config.num_attention_heads,
            n_kv_heads={kv},
        )
"""

MODEL = """class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.n_kv_heads = {kv}

    def forward(self, q, k, v):
        groups = self.n_heads // self.n_kv_heads  # GQA: each k/v head serves `groups` q heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = q @ k.transpose(2, 3){extra}
        return scores.softmax(-1) @ v
"""

MODEL_AFTER = """class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.n_kv_heads = args.n_kv_heads

    def forward(self, q, k, v):
        scores = q @ k.transpose(2, 3)
        return scores.softmax(-1) @ v
"""


def _apply(kv="hf_config.num_attention_heads", attribute="args.n_kv_heads", extra=""):
    model = MODEL.format(kv=attribute, extra=extra)
    package = package_of({"args.py": ARGS.format(kv=kv), "model.py": model})
    DropKvRepeat().apply(package)
    return package.render()["model.py"], model


def test_the_repeat_goes_where_kv_heads_read_the_query_head_count():
    after, _ = _apply()
    assert after == MODEL_AFTER


@pytest.mark.parametrize(
    ("kv", "attribute", "extra"),
    [
        # a config of its own for the kv heads: grouped-query attention, repeat kept
        ("hf_config.num_key_value_heads", "args.n_kv_heads", ""),
        # a per-layer count (layer_attention_sizes) may differ from n_heads
        ("hf_config.num_attention_heads", "args.layer_n_kv_heads[layer_id]", ""),
        # `groups` read again later: the lines are not only the repeat
        ("hf_config.num_attention_heads", "args.n_kv_heads", " * groups"),
    ],
)
def test_the_repeat_stays_wherever_a_kv_head_may_serve_several_query_heads(kv, attribute, extra):
    after, before = _apply(kv, attribute, extra)
    assert after == before


def test_a_package_for_a_config_without_a_kv_head_count_repeats_no_keys(tmp_path):
    """Scaffolded for MPT (whose config holds no kv-head count, so `from_hf_config` reads
    `num_attention_heads` for both counts once aligned), the written-out attention copies
    no k/v; a config with a kv-head count of its own (Gemma-2) keeps the repeat."""
    from codegen.scaffold.build import Step
    from codegen.scaffold.pipeline import scaffold_into

    models = tmp_path / "models"
    steps = {"mpt": [Step("no_rope"), Step("alibi")], "gemma2": [Step("add_attention_softcap")]}
    for model_type, kept in (("mpt", False), ("gemma2", True)):
        name = f"renamed_{model_type}"
        scaffold_into(models, "llama", name, [model_type], steps[model_type])
        tree = ast.parse((models / name / "model.py").read_text())
        attention = next(
            n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Attention"
        )
        calls = [
            node.func.attr
            for node in ast.walk(attention)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        ]
        assert ("repeat_interleave" in calls) is kept, model_type
        _check_heads_refused(models, name, refused=not kept)


def _check_heads_refused(models, name: str, refused: bool) -> None:
    """The scaffolded package's ModelArgs with fewer kv heads than query heads: built as
    given where the attention kept its repeat; where it lost it, tidy's `drop_kv_heads` left
    no kv count to give (a field that could only equal n_heads)."""
    import dataclasses

    from codegen.models import load_spec

    args = load_spec(name, models).args
    if not refused:
        assert args(n_heads=4, n_kv_heads=2).n_kv_heads == 2
        return
    assert "n_kv_heads" not in {field.name for field in dataclasses.fields(args)}


def test_modelargs_refuses_fewer_kv_heads_once_the_repeat_is_gone():
    """Where the repeat goes, `__post_init__` refuses n_kv_heads != n_heads in one line and
    the field's comment says so; where it stays (a kv-head count of its own), args.py is
    untouched."""
    package = package_of(
        {
            "args.py": ARGS.format(kv="hf_config.num_attention_heads"),
            "model.py": MODEL.format(kv="args.n_kv_heads", extra=""),
        }
    )
    DropKvRepeat().apply(package)
    args = package.render()["args.py"]
    assert "    n_kv_heads: int = 8  # one per query head: n_heads (__post_init__ refuses" in args
    namespace: dict = {}
    exec(args, namespace)
    ModelArgs = namespace["ModelArgs"]
    assert ModelArgs(n_heads=4, n_kv_heads=4).n_kv_heads == 4
    with pytest.raises(NotImplementedError) as err:
        ModelArgs(n_heads=4, n_kv_heads=2)
    line = str(err.value)
    assert "\n" not in line and "n_kv_heads=2 with n_heads=4 is not supported" in line

    kept = ARGS.format(kv="hf_config.num_key_value_heads")
    package = package_of(
        {"args.py": kept, "model.py": MODEL.format(kv="args.n_kv_heads", extra="")}
    )
    DropKvRepeat().apply(package)
    assert package.render()["args.py"] == kept


SDPA_MODEL = """class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads = args.n_heads
        self.n_kv_heads = args.n_kv_heads

    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(
            q, k, v, is_causal=True, enable_gqa=self.n_heads != self.n_kv_heads
        )
"""


def test_sdpa_gqa_flag_goes_where_kv_heads_read_the_query_head_count():
    """`enable_gqa` compares two counts from_hf_config makes equal: always False, dropped,
    and ModelArgs refuses another count; with a kv-head field of its own it stays."""
    package = package_of(
        {"args.py": ARGS.format(kv="hf_config.num_attention_heads"), "model.py": SDPA_MODEL}
    )
    DropKvRepeat().apply(package)
    files = package.render()
    call = "return F.scaled_dot_product_attention(\n            q, k, v, is_causal=True\n        )"
    assert call in files["model.py"]
    assert "enable_gqa" not in files["model.py"]
    assert "__post_init__ refuses" in files["args.py"]

    package = package_of(
        {"args.py": ARGS.format(kv="hf_config.num_key_value_heads"), "model.py": SDPA_MODEL}
    )
    DropKvRepeat().apply(package)
    assert package.render()["model.py"] == SDPA_MODEL
