"""ConstructorStd: the named parameters start at their constructor's std after the plain init,
whatever initializer_range; the others keep the table's initializer_range."""

import importlib
import importlib.util
import sys

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.scaffold.standalone import vendor
from codegen.transforms.constructor_std import ConstructorStd
from codegen.transforms.edits import EditError
from codegen.transforms.testing import package_of

STDS = (
    ("model.layers.{}.self_attn.o_proj.weight", 0.02),
    ("model.layers.{}.mlp.down_proj.weight", 0.02),
)


def _package() -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "llama")
    ConstructorStd().apply(package, stds=STDS)
    return package


def test_the_house_names_come_from_the_adapter_rows():
    code = _package().render()["model.py"]
    assert (
        'CONSTRUCTOR_STDS = {"layers.*.attention.wo.weight": 0.02,'
        ' "layers.*.feed_forward.w2.weight": 0.02}'
    ) in code
    assert (
        "        init_module_weights(self, self.args.initializer_range, buffer_device)\n"
        "        for name, weight in self.named_parameters():  # as HF's constructors drew them\n"
    ) in code
    assert "from fnmatch import fnmatchcase" in code


def test_the_init_weights_docstring_names_the_weights_at_their_own_std():
    code = _package().render()["model.py"]
    assert (
        "with the config's initializer_range.\n\n"
        "        The CONSTRUCTOR_STDS weights, which it never reaches,"
        " at their constructor's std.\n"
        '        """\n'
    ) in code


def test_before_the_transform_every_matrix_starts_at_initializer_range():
    code = SourcePackage.from_directory(references_dir() / "llama").render()["model.py"]
    assert "CONSTRUCTOR_STDS" not in code


def _model(package: SourcePackage, tmp_path, initializer_range: float):
    folder = tmp_path / "llamax"
    folder.mkdir()
    for name, text in vendor(package.files, index=package.index).items():
        (folder / name).write_text(text)
    spec = importlib.util.spec_from_file_location(
        "llamax", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["llamax"] = module
    try:
        spec.loader.exec_module(module)
        model_module = importlib.import_module("llamax.model")
        args_module = importlib.import_module("llamax.args")
        args = args_module.ModelArgs(
            dim=64,
            n_layers=2,
            n_heads=4,
            n_kv_heads=2,
            head_dim=16,
            hidden_dim=128,
            vocab_size=64,
            initializer_range=initializer_range,
        )
        model = model_module.Model(args)
        torch.manual_seed(0)
        model.init_weights()
    finally:
        for name in [n for n in sys.modules if n == "llamax" or n.startswith("llamax.")]:
            del sys.modules[name]
    return model


def test_the_named_weights_start_at_their_std_whatever_initializer_range(tmp_path):
    model = _model(_package(), tmp_path, initializer_range=0.5)
    for layer in model.layers:
        assert layer.attention.wo.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert layer.feed_forward.w2.weight.std().item() == pytest.approx(0.02, rel=0.1)
        assert layer.attention.wq.weight.std().item() == pytest.approx(0.5, rel=0.1)
        assert layer.feed_forward.w1.weight.std().item() == pytest.approx(0.5, rel=0.1)


def test_a_key_without_an_adapter_row_is_an_error():
    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(EditError):
        ConstructorStd().apply(package, stds=(("model.layers.{}.mixer.nothing.weight", 0.02),))


def test_a_model_without_init_weights_is_refused():
    package = package_of({"model.py": "class Model:\n    def forward(self):\n        pass\n"})
    with pytest.raises(EditError):
        ConstructorStd().apply(package, stds=STDS)
