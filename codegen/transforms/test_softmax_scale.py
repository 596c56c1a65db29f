"""OptionalSoftmaxScale: the config's softmax scale when set, head_dim ** -0.5 when None."""

import math
from types import SimpleNamespace

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.softmax_scale import SCALE, OptionalSoftmaxScale
from codegen.transforms.testing import package_of


def _llama() -> SourcePackage:
    return SourcePackage.from_directory(references_dir() / "llama")


def test_sdpa_gets_the_optional_scale():
    package = _llama()
    OptionalSoftmaxScale().apply(package)
    files = package.render()
    model, args = files["model.py"], files["args.py"]
    assert (
        "        self.head_dim = args.head_dim\n"
        "        self.scale = args.softmax_scale if args.softmax_scale is not None"
        " else args.head_dim**-0.5\n"
    ) in model
    assert "scale=self.scale)" in model
    assert "softmax_scale: float | None = None  # scores times this" in args
    assert "softmax_scale=hf_config.softmax_scale," in args
    compile(model, "model.py", "exec")


def test_written_out_scores_use_the_scale():
    package = _llama()
    before = package.render()["model.py"]
    # an eager attention (ALiBi's): the scores are scaled by hand
    sdpa = before[before.index("        out = F.scaled_dot_product_attention(") :]
    sdpa = sdpa[: sdpa.index("\n        return")]
    eager = (
        "        scores = q @ k.transpose(2, 3) * self.head_dim**-0.5\n"
        "        out = torch.softmax(scores, dim=-1) @ v"
    )
    package = package_of({**package.render(), "model.py": before.replace(sdpa, eager)})
    OptionalSoftmaxScale().apply(package)
    assert "scores = q @ k.transpose(2, 3) * self.scale\n" in package.render()["model.py"]


@pytest.mark.parametrize("value, expected", [(None, 1 / math.sqrt(40)), (0.5, 0.5)])
def test_the_scale_each_setting_gives(value, expected):
    namespace = {"self": SimpleNamespace()}
    args = SimpleNamespace(softmax_scale=value, head_dim=40)
    exec(SCALE.format(field="softmax_scale"), {"args": args}, namespace)
    assert namespace["self"].scale == pytest.approx(expected, rel=1e-12)


def test_an_attention_with_its_own_scale_is_an_error():
    from codegen.transforms.attention_scale import AttentionScale

    package = _llama()
    AttentionScale().apply(package, field="attention_multiplier", form="multiplier")
    with pytest.raises(EditError):
        OptionalSoftmaxScale().apply(package)
