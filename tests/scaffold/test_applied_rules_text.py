"""model.py's "Rules applied" header says what was done to the package: it cites each
feature by the value HF's code uses (the constant a router adds to its sum, not the category
the references are compared on), and it lists only the rules whose transform changed a file
(a rule whose transform found nothing to edit did nothing to the package)."""

from __future__ import annotations

import ast

import libcst as cst
import pytest

from codegen.scaffold.build import Step, build_package
from codegen.transforms.base import Transform
from codegen.transforms.catalog import TRANSFORMS


class _Features:
    """The analysed values of a target, by dotted name (what `Features.get` answers)."""

    def __init__(self, **values):
        self.values = {name.replace("__", "."): value for name, value in values.items()}
        self.moe = object()

    def get(self, name):
        return self.values.get(name)


def test_a_categorised_feature_is_cited_by_its_analysed_value():
    """The references compare the router's renormalising constant as none / 1e-20 / other;
    the text cites the number itself, read under the real config (the toy's values are no
    fact about the target), and the category where no real number is to be had."""
    from codegen.analyze.reference import shown_value

    toy = _Features(moe__norm_topk_eps=1e-06, moe__routed_scaling=2.5, moe__zero_experts={"n": 1})
    real = _Features(moe__norm_topk_eps=1e-06, moe__routed_scaling=None, moe__zero_experts={"n": 1})
    assert shown_value(toy, "moe.norm_topk_eps", real) == 1e-06
    assert shown_value(toy, "moe.norm_topk_eps") == "other"  # no real config analysed
    # the real config sits in another category than the toy (no scaling by default)
    assert shown_value(toy, "moe.routed_scaling", real) == "yes"
    assert shown_value(toy, "moe.zero_experts", real) is True  # a structure: its category
    partial = _Features(rope__partial_rotary=0.25)
    assert shown_value(partial, "rope.partial_rotary", partial) == 0.25


def test_the_plan_cites_the_constant_the_router_adds():
    pytest.importorskip("transformers.models.lfm2_moe")
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    plan = make_plan(load_target("lfm2_moe"))
    (step,) = [step for step in plan.steps if step.transform == "router_renorm_eps"]
    assert step.reason.startswith("moe.norm_topk_eps = 1e-06 ("), step.reason


class _PinDefault(Transform):
    """Edits args.py alone (a pinned config default): a change to the package all the same."""

    name = "test_pin_default"

    def apply(self, package, features=None, **params) -> None:
        module = package.module("args.py")
        pinned = cst.parse_statement("PINNED = 1\n")
        package.files["args.py"] = module.with_changes(body=[*module.body, pinned])


class _RebuildSame(Transform):
    """Rewrites model.py into a new tree with the same code: no change."""

    name = "test_rebuild_same"

    def apply(self, package, features=None, **params) -> None:
        package.files["model.py"] = cst.parse_module(package.module("model.py").code)


def _header(files: dict[str, str]) -> list[str]:
    docstring = ast.get_docstring(ast.parse(files["model.py"]))
    return [line.split()[1] for line in docstring.splitlines() if line.startswith("- ")]


def test_a_rule_whose_transform_edits_nothing_is_not_listed(monkeypatch):
    """The router's renormalising constant on a package without a router, and a transform
    that rebuilds model.py unchanged, edit nothing: their rules are left out. A QK-norm
    (model.py) and a pinned default (args.py alone) are listed, in order."""
    monkeypatch.setitem(TRANSFORMS, _PinDefault.name, _PinDefault)
    monkeypatch.setitem(TRANSFORMS, _RebuildSame.name, _RebuildSame)
    steps = [
        Step("router_renorm_eps", {"eps": None}, "renorm_rule", "x = None (x.py:1)"),
        Step("set_qk_norm", {"kind": "per_head"}, "norm_rule", "x = 'per_head' (x.py:2)"),
        Step(_RebuildSame.name, {}, "same_rule", "x = 1 (x.py:3)"),
        Step(_PinDefault.name, {}, "pin_rule", "x = 1 (x.py:4)"),
    ]
    files = build_package("llama", "tiny", ["tiny"], steps)
    assert _header(files) == ["norm_rule", "pin_rule"]
    assert files.rules == ("norm_rule", "pin_rule")  # what `codegen scaffold` counts
    assert "PINNED = 1" in files["args.py"]


def test_scaffold_counts_the_rules_the_header_lists(tmp_path, capsys):
    """deepseek_v2's plan holds `router_renorm_eps`, whose transform finds nothing to edit
    there: the count `codegen scaffold` prints is the header's, not the plan's."""
    pytest.importorskip("transformers.models.deepseek_v2")
    from codegen.cli import main
    from codegen.scaffold.plan import make_plan
    from codegen.scaffold.target import load_target

    planned = [step.rule for step in make_plan(load_target("deepseek_v2")).steps if step.rule]
    assert "router_renorm_eps" in planned
    assert main(["scaffold", "deepseek_v2", "--out", str(tmp_path)]) == 0
    listed = _header({"model.py": (tmp_path / "deepseek_v2" / "model.py").read_text()})
    assert "router_renorm_eps" not in listed
    assert f"from deepseek_v3 ({len(listed)} rules); registered" in capsys.readouterr().out


def test_changed_files_compares_code_not_trees():
    from codegen.scaffold.build import changed_files

    code = cst.parse_module("x = 1\n")
    before = {"a.py": code, "b.py": code}
    assert changed_files(before, {"a.py": cst.parse_module("x = 1\n"), "b.py": code}) == []
    after = {"a.py": cst.parse_module("x = 2\n"), "c.py": code}
    assert changed_files(before, after) == ["a.py", "b.py", "c.py"]
