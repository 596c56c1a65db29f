"""NtkAlphaRope: before/after on the qwen3 reference, and the rope it builds."""

import ast

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.ntk_alpha_rope import NtkAlphaRope


def _package():
    return SourcePackage.from_directory(references_dir() / "qwen3")


def _function(args: str, key: str = "alpha"):
    tree = ast.parse(args)
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "ntk_alpha")
    scope: dict = {}
    exec(compile(ast.Module([node], []), "args.py", "exec"), scope)  # noqa: S102
    return scope["ntk_alpha"]


def test_from_hf_config_hands_the_rope_through_ntk_alpha():
    assert "ntk_alpha" not in _package().render()["args.py"]
    package = _package()
    NtkAlphaRope().apply(package, key="alpha")
    args = package.render()["args.py"]
    call = next(
        n
        for n in ast.walk(ast.parse(args))
        if isinstance(n, ast.Call) and ast.unparse(n.func) == "RopeScaling.from_hf"
    )
    assert ast.unparse(call.args[0]) == "ntk_alpha(rope, hf_config.head_dim)"


def test_only_a_dynamic_rope_with_alpha_is_rewritten():
    package = _package()
    NtkAlphaRope().apply(package, key="alpha")
    ntk_alpha = _function(package.render()["args.py"])
    rope = {"rope_type": "dynamic", "factor": 2.0, "alpha": 1000.0, "rope_theta": 10000.0}
    fixed = ntk_alpha(rope, 128)
    assert fixed["rope_type"] == "default"
    assert fixed["rope_theta"] == 10000.0 * 1000.0 ** (128 / 126)
    assert ntk_alpha({**rope, "alpha": None}, 128) == {**rope, "alpha": None}  # real dynamic
    default = {"rope_type": "default", "alpha": 8.0, "rope_theta": 10000.0}
    assert ntk_alpha(default, 128) is default  # HF reads alpha only with "dynamic"


def test_the_key_is_the_analysed_one():
    package = _package()
    NtkAlphaRope().apply(package, key="ntk_factor")
    ntk_alpha = _function(package.render()["args.py"])
    rope = {"rope_type": "dynamic", "ntk_factor": 4.0, "rope_theta": 100.0}
    assert ntk_alpha(rope, 10)["rope_theta"] == 100.0 * 4.0 ** (10 / 8)
