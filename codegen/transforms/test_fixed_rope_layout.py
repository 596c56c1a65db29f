"""FixRopeLayout: before/after on the deepseek_v3 reference."""

from __future__ import annotations

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.fixed_rope_layout import FixRopeLayout
from codegen.transforms.testing import package_of

SWITCHED = "self.rotate = apply_rotary_interleaved if args.rope_interleave else apply_rotary"


def v3_package() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "deepseek_v3")


def features_with_config(tmp_path, text: str):
    configuration = tmp_path / "configuration_x.py"
    configuration.write_text(text)

    class Source:
        pass

    class Features:
        source = Source()

    Features.source.configuration = str(configuration)
    return Features()


def test_interleaved_without_switch(tmp_path):
    package = v3_package()
    assert SWITCHED in package.render()["model.py"]
    features = features_with_config(tmp_path, "class XConfig:\n    topk_method: str\n")
    FixRopeLayout().apply(package, features, interleaved=True)
    model = package.render()["model.py"]
    assert SWITCHED not in model
    assert "self.rotate = apply_rotary_interleaved  # rope dims are interleaved pairs" in model
    assert "args.rope_interleave" not in model  # the args field is left for tidy to drop


def test_halves_without_switch():
    package = v3_package()
    FixRopeLayout().apply(package, interleaved=False, switch=False)
    assert "self.rotate = apply_rotary  # rope dims are two halves" in package.render()["model.py"]


def test_config_with_the_switch_keeps_it(tmp_path):
    package = v3_package()
    before = package.render()
    features = features_with_config(tmp_path, "class XConfig:\n    rope_interleave: bool\n")
    FixRopeLayout().apply(package, features, interleaved=True)
    assert package.render() == before


def test_needs_the_rotate_attribute():
    package = package_of({"model.py": "class Attention:\n    def __init__(self):\n        pass\n"})
    with pytest.raises(EditError):
        FixRopeLayout().apply(package, interleaved=True, switch=False)
