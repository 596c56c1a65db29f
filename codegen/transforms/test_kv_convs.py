"""KvConvs: before/after on the qwen3 reference, and the generated `CausalConv` against
transformers' inkling short convolution with the same filter."""

from __future__ import annotations

import ast
import importlib
import sys

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.kv_convs import KvConvs

CONVS = {
    "convs": (("k_sconv", "k_proj"), ("v_sconv", "v_proj")),
    "conv": "conv1d",
    "kernel": 4,
    "kernel_field": "conv_kernel_size",
    "fp32": True,
}


def _package(convs=CONVS) -> SourcePackage:
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    KvConvs().apply(package, convs=convs)
    return package


def _method(code: str, cls: str, name: str) -> list[str]:
    tree = ast.parse(code)
    owner = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    method = next(n for n in owner.body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [ast.unparse(s) for s in method.body]


def test_keys_and_values_are_filtered_before_the_view_and_the_key_norm():
    before = SourcePackage.from_directory(references_dir() / "qwen3").render()["model.py"]
    assert "CausalConv" not in before
    files = _package().render()
    init = _method(files["model.py"], "Attention", "__init__")
    assert "self.k_conv = CausalConv(self.wk.out_features, args.conv_kernel)" in init
    assert "self.v_conv = CausalConv(self.wv.out_features, args.conv_kernel)" in init
    forward = "\n".join(_method(files["model.py"], "Attention", "forward"))
    assert "self.k_norm(self.k_conv(self.wk(x)).view(" in forward
    assert "v = self.v_conv(self.wv(x)).view(" in forward
    assert "self.wk(x)" not in forward.replace("self.k_conv(self.wk(x))", "")
    assert "conv_kernel=hf_config.conv_kernel_size" in files["args.py"]
    adapter = files["state_dict_adapter.py"]
    for hf, house in (("k_sconv", "k_conv"), ("v_sconv", "v_conv")):
        hf_key = f"model.layers.{{}}.self_attn.{hf}.conv1d.weight"
        assert f'"{hf_key}": "layers.{{}}.attention.{house}.conv.weight"' in adapter


def test_without_the_projections_row_the_edit_fails_loudly():
    with pytest.raises(EditError, match="q_a_proj"):
        _package({**CONVS, "convs": (("k_sconv", "q_a_proj"),)})


def _causal_conv(tmp_path, convs: dict):
    """The generated CausalConv class, imported from a file of its own."""
    model = _package(convs).render()["model.py"]
    tree = ast.parse(model)
    (node,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CausalConv"]
    path = tmp_path / "causal_conv.py"
    path.write_text("import math\n\nimport torch\nfrom torch import nn\n\n" + ast.unparse(node))
    sys.path.insert(0, str(tmp_path))
    try:
        return importlib.import_module("causal_conv").CausalConv
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("causal_conv", None)


def test_a_divided_sum_is_divided_once_in_the_shared_module():
    """Inkling-2 divides the residual sum by sqrt(kernel + 1): the module keeps the analysed
    expression over its kernel, and `import math` is added for it."""
    files = _package({**CONVS, "divisor": "math.sqrt(kernel + 1)"}).render()
    init = _method(files["model.py"], "CausalConv", "__init__")
    assert "self.divisor = math.sqrt(kernel + 1)" in init
    forward = _method(files["model.py"], "CausalConv", "forward")
    assert forward[-1] == "return (summed / self.divisor).to(x.dtype)"
    assert "import math" in files["model.py"]
    plain = _package().render()["model.py"]
    assert "divisor" not in plain and "import math" not in plain


def test_the_divided_module_is_inkling2s_short_convolution(tmp_path):
    """Fed the weights of transformers' Inkling2ShortConvolution, the divided CausalConv gives
    its output in fp32 and in bf16 (computed in fp32)."""
    inkling2 = pytest.importorskip("transformers.models.inkling2.modeling_inkling2")
    CausalConv = _causal_conv(tmp_path, {**CONVS, "divisor": "math.sqrt(kernel + 1)"})
    torch.manual_seed(0)
    theirs = inkling2.Inkling2ShortConvolution(24, 3, layer_idx=0, conv_idx=0)
    torch.nn.init.normal_(theirs.conv1d.weight)
    ours = CausalConv(24, 3)
    ours.conv.weight.data.copy_(theirs.conv1d.weight.data)
    x = torch.randn(2, 9, 24)
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    got, want = ours(x.bfloat16()), theirs(x.bfloat16())
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("fp32", [True, False])
def test_the_module_is_hfs_short_convolution(tmp_path, fp32):
    """The generated CausalConv, fed the weights of transformers' InklingShortConvolution,
    gives its output on a sequence longer than the kernel, in bf16 (fp32 inside when the
    analysis says so) and fp32."""
    inkling = pytest.importorskip("transformers.models.inkling.modeling_inkling")
    CausalConv = _causal_conv(tmp_path, {**CONVS, "fp32": fp32})
    torch.manual_seed(0)
    theirs = inkling.InklingShortConvolution(24, 4, layer_idx=0, conv_idx=0)
    torch.nn.init.normal_(theirs.conv1d.weight)
    ours = CausalConv(24, 4)
    ours.conv.weight.data.copy_(theirs.conv1d.weight.data)
    x = torch.randn(2, 9, 24)
    torch.testing.assert_close(ours(x), theirs(x))
    if fp32:  # HF keeps the filter in fp32 and computes in fp32 under a bf16 input
        got, want = ours(x.bfloat16()), theirs(x.bfloat16())
        assert got.dtype == want.dtype == torch.bfloat16
        torch.testing.assert_close(got, want)
