"""GroupedOutput: the output projection per group of heads, then to dim."""

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.grouped_output import GROUPED_LINEAR, GroupedOutput
from codegen.transforms.testing import reference_with_adapter

GROUPED = {"a": "o_a_proj", "b": "o_b_proj", "groups": "o_groups", "rank": "o_lora_rank"}


def test_reference_llama_before_and_after():
    package = SourcePackage.from_directory(references_dir() / "llama")
    before = package.render()
    assert "self.wo = nn.Linear" in before["model.py"]
    GroupedOutput().apply(package, grouped=GROUPED)
    files = package.render()
    model = files["model.py"]
    assert "self.wo = " not in model
    assert "class GroupedLinear(nn.Linear):" in model
    assert model.index("class GroupedLinear") < model.index("class Attention")
    assert (
        "        self.wo_a = GroupedLinear(\n"
        "            args.n_heads * args.head_dim // args.o_groups, args.o_groups,"
        " args.o_lora_rank\n"
        "        )\n"
        "        self.wo_b = nn.Linear(args.o_groups * args.o_lora_rank, args.dim, bias=False)\n"
    ) in model
    assert "return self.wo_b(self.wo_a(out.transpose(1, 2).reshape(batch, seq, -1)))" in model
    args = files["args.py"]
    assert "o_groups: int = 1" in args and "o_lora_rank: int = 0" in args
    assert "o_groups=hf_config.o_groups" in args and "o_lora_rank=hf_config.o_lora_rank" in args
    adapter = files["state_dict_adapter.py"]
    assert (
        '"model.layers.{}.self_attn.o_a_proj.weight": "layers.{}.attention.wo_a.weight"' in adapter
    )
    assert (
        '"model.layers.{}.self_attn.o_b_proj.weight": "layers.{}.attention.wo_b.weight"' in adapter
    )
    assert "o_proj" not in adapter.replace("o_a_proj", "").replace("o_b_proj", "")


def test_grouped_linear_projects_each_group_by_its_own_block():
    namespace = {"torch": torch, "nn": torch.nn}
    exec(GROUPED_LINEAR, namespace)
    torch.manual_seed(0)
    layer = namespace["GroupedLinear"](5, 3, 2)  # 3 groups of 5 features -> 3 x 2
    x = torch.randn(4, 15)
    blocks = layer.weight.view(3, 2, 5)
    expected = torch.cat([x[:, 5 * g : 5 * g + 5] @ blocks[g].T for g in range(3)], dim=-1)
    torch.testing.assert_close(layer(x), expected)


def test_grouped_linear_makes_one_output_sized_tensor_and_keeps_its_gradients():
    """The groups' blocks are written into one output: no op makes a second tensor of the
    output's size (a batched product then its reordered copy), and the gradients stay
    those of the block-diagonal product."""
    from torch.utils._python_dispatch import TorchDispatchMode

    namespace = {"torch": torch, "nn": torch.nn}
    exec(GROUPED_LINEAR, namespace)
    torch.manual_seed(0)
    layer = namespace["GroupedLinear"](5, 4, 6)  # 4 groups of 5 features -> 4 x 6
    x = torch.randn(2, 3, 20, requires_grad=True)

    class Storages(TorchDispatchMode):
        made: dict[int, int] = {}  # the bytes of each storage an op's output lies in

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                storage = out.untyped_storage()
                self.made[storage.data_ptr()] = storage.nbytes()
            return out

    with Storages():
        y = layer(x)
    sizes = list(Storages.made.values())
    assert sizes.count(y.untyped_storage().nbytes()) == 1, sizes
    blocks = layer.weight.view(4, 6, 5)
    expected = torch.einsum("...gi,gri->...gr", x.unflatten(-1, (4, 5)), blocks).flatten(-2)
    torch.testing.assert_close(y, expected)
    grad = torch.randn_like(y)
    got = torch.autograd.grad(y, (x, layer.weight), grad)
    want = torch.autograd.grad(expected, (x, layer.weight), grad)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b)


def test_no_output_projection_row_is_an_error():
    adapter = 'class StateDictAdapter:\n    from_hf_map = {"model.norm.weight": "norm.weight"}\n'
    package = reference_with_adapter(adapter)
    with pytest.raises(EditError, match="maps no attention.wo.weight"):
        GroupedOutput().apply(package, grouped=GROUPED)
