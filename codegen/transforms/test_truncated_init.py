"""TruncatedInit: every normal draw of the init becomes a truncated one at +-cutoff stds."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.scaled_residual_init import ScaledResidualInit
from codegen.transforms.testing import package_of
from codegen.transforms.truncated_init import TruncatedInit

CUTOFF = (
    "(hf_config.initializer_cutoff_factor"
    " if hf_config.initializer_cutoff_factor is not None else 3)"
)


def _llama(*, scaled: bool = False):
    package = SourcePackage.from_directory(references_dir() / "llama")
    if scaled:
        ScaledResidualInit().apply(package)
    TruncatedInit().apply(package, cutoff=CUTOFF)
    return package.render()


def test_the_package_owns_a_truncating_copy_of_the_init_table():
    files = _llama()
    lifecycle, model = files["lifecycle.py"], files["model.py"]
    assert "from .lifecycle import init_module_buffers, init_module_weights" in model
    assert "codegen.layers.lifecycle" not in model
    assert "nn.init.normal_" not in lifecycle
    assert (
        "def _linear(module: nn.Module, std: float, cutoff: float) -> None:\n"
        "    nn.init.trunc_normal_(module.weight, mean=0.0, std=std,"
        " a=-cutoff * std, b=cutoff * std)\n"
    ) in lifecycle
    assert "                rule(module, std, cutoff)\n" in lifecycle
    assert "                _own_tensors(module, std, cutoff)\n" in lifecycle
    assert "module.init_parameters(std)" in lifecycle  # a module's own method keeps its call
    assert (
        "init_module_weights(self, self.args.initializer_range, self.args.init_cutoff,"
        " buffer_device)" in model
    )


def test_the_cutoff_is_a_config_field():
    args = _llama()["args.py"]
    assert (
        "    init_cutoff: float = 3.0  # normal inits are truncated at +-init_cutoff stds\n" in args
    )
    assert f"init_cutoff={CUTOFF}," in args


def test_init_weights_own_draws_are_truncated_too():
    model = _llama(scaled=True)["model.py"]
    assert "nn.init.normal_" not in model
    assert (
        "nn.init.trunc_normal_(projection.weight, mean=0.0, std=residual_std, "
        "a=-self.args.init_cutoff * residual_std, b=self.args.init_cutoff * residual_std)"
    ) in model


def test_a_draw_outside_init_weights_is_refused():
    package = SourcePackage.from_directory(references_dir() / "llama")
    model = package.render()["model.py"] + (
        "\n\nclass Extra(nn.Module):\n"
        "    def init_parameters(self, std):\n"
        "        nn.init.normal_(self.weight, mean=0.0, std=std)\n"
    )
    package = package_of({**package.render(), "model.py": model})
    with pytest.raises(EditError, match="untruncated"):
        TruncatedInit().apply(package, cutoff="3")


def test_no_cutoff_is_refused():
    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(EditError):
        TruncatedInit().apply(package, cutoff=None)


def test_the_table_says_its_normals_are_truncated():
    lifecycle = _llama()["lifecycle.py"]
    docstring = lifecycle.split('"""')[1]
    assert docstring.rstrip().endswith(
        "Every normal draw here is truncated at +-`cutoff` stds, as HF's `trunc_normal_` is."
    )
