"""ScaledResidualInit: wo and w2 start at std / sqrt(2 * n_layers) after the plain init."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.scaled_residual_init import ScaledResidualInit
from codegen.transforms.testing import package_of


def test_init_weights_redraws_the_output_projections():
    package = SourcePackage.from_directory(references_dir() / "llama")
    ScaledResidualInit().apply(package)
    model = package.render()["model.py"]
    assert (
        "        init_module_weights(self, self.args.initializer_range, buffer_device)\n"
        "        # the projections per layer onto the residual stream start smaller\n"
        "        residual_std = self.args.initializer_range / (2 * self.args.n_layers) ** 0.5\n"
        "        for layer in self.layers:\n"
        "            for projection in (layer.attention.wo, layer.feed_forward.w2):\n"
        "                nn.init.normal_(projection.weight, mean=0.0, std=residual_std)\n"
    ) in model


def test_only_the_attention_output_when_hf_scales_only_that():
    package = SourcePackage.from_directory(references_dir() / "llama")
    ScaledResidualInit().apply(package, projections=("attention",))
    model = package.render()["model.py"]
    assert "            for projection in (layer.attention.wo,):\n" in model
    assert "layer.feed_forward.w2" not in model


def test_an_unknown_projection_is_refused():
    package = SourcePackage.from_directory(references_dir() / "llama")
    with pytest.raises(ValueError):
        ScaledResidualInit().apply(package, projections=("router",))


def test_a_model_without_init_weights_is_refused():
    package = package_of({"model.py": "class Model:\n    def forward(self):\n        pass\n"})
    with pytest.raises(EditError):
        ScaledResidualInit().apply(package)


def test_the_head_dense_layer_and_an_untied_head_when_hf_scales_them():
    package = package_of(
        {
            "model.py": (
                "class Model:\n"
                "    def init_weights(self, buffer_device=None):\n"
                "        init_module_weights(self, self.args.initializer_range, buffer_device)\n"
            )
        }
    )
    ScaledResidualInit().apply(package, projections=("head_transform", "head"))
    model = package.render()["model.py"]
    assert "for layer in self.layers" not in model  # no projection of the layers is scaled
    assert (
        "        nn.init.normal_(self.head_dense.weight, mean=0.0, std=residual_std)\n"
        "        if not self.args.tie_word_embeddings:  # tied: the embedding's start stands\n"
        "            nn.init.normal_(self.output.weight, mean=0.0, std=residual_std)\n"
    ) in model
