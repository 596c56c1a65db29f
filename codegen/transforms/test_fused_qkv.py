"""FuseQkv: before/after on the llama reference."""

import pytest

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.edits import EditError
from codegen.transforms.fused_qkv import GROUPED_SPLIT, FuseQkv
from codegen.transforms.qk_norm import SetQkNorm
from codegen.transforms.qkv_bias import SetQkvBias
from codegen.transforms.testing import package_of


def _llama():
    return SourcePackage.from_directory(references_dir() / "llama")


def test_one_projection_split_after_the_matmul():
    package = _llama()
    FuseQkv().apply(package)
    files = package.render()
    model = files["model.py"]
    assert "self.wq =" not in model and "self.wk =" not in model and "self.wv =" not in model
    assert (
        "self.wqkv = nn.Linear(args.dim, (args.n_heads + 2 * args.n_kv_heads) * args.head_dim, "
        "bias=args.attention_bias)" in model
    )
    split = "q, k, v = qkv.split([qkv.shape[-1] - 2 * kv_size, kv_size, kv_size], dim=-1)"
    assert split in model
    assert "q = q.view(batch, seq, -1, self.head_dim).transpose(1, 2)" in model
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.self_attn.qkv_proj.weight": "layers.{}.attention.wqkv.weight"' in (
        adapter
    )
    assert not any(f".{p}_proj." in adapter for p in "qkv")


def test_fused_bias_and_qk_norm_compose():
    package = _llama()
    SetQkvBias().apply(package, enabled=True)
    SetQkNorm().apply(package, kind="per_head")
    FuseQkv().apply(package, hf_name="qkv")
    files = package.render()
    assert "* args.head_dim, bias=True)" in files["model.py"]
    assert (
        "q = self.q_norm(q.view(batch, seq, -1, self.head_dim)).transpose(1, 2)"
        in (files["model.py"])
    )
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.self_attn.qkv.bias": "layers.{}.attention.wqkv.bias"' in adapter
    assert adapter.count("wqkv") == 2


def test_a_package_without_wq_is_an_error():
    package = package_of({"model.py": "class Attention:\n    def __init__(self):\n        pass\n"})
    with pytest.raises(EditError):
        FuseQkv().apply(package)


def test_grouped_rows_split_on_a_kv_head_axis():
    """A checkpoint whose fused rows are grouped per kv head is split per group, not as
    q | k | v (the adapter row stays one to one)."""
    package = _llama()
    FuseQkv().apply(package, layout="grouped")
    model = package.render()["model.py"]
    assert "qkv = self.wqkv(x).view(batch, seq, -1, group + 2, self.head_dim)" in model
    assert "qkv.split([group, 1, 1], dim=3)" in model
    assert "kv_size, kv_size], dim=-1)" not in model


@pytest.mark.parametrize("n_heads, n_kv_heads", [(4, 4), (4, 2)])
def test_grouped_split_gives_each_head_its_rows_and_copies_only_q_groups(n_heads, n_kv_heads):
    """The split lines, run: every head gets its own rows of the grouped layout; k and v (and
    q with one query head per kv head) are views of the projection's output, not copies."""
    import torch

    batch, seq, head_dim, group = 2, 3, 5, n_heads // n_kv_heads
    rows = torch.randn(batch, seq, n_kv_heads * (group + 2) * head_dim)
    scope = {"x": None, "batch": batch, "seq": seq}
    fake = type("Self", (), {"n_heads": n_heads, "n_kv_heads": n_kv_heads, "head_dim": head_dim})
    scope["self"] = fake()
    scope["self"].wqkv = lambda x: rows
    exec(GROUPED_SPLIT, scope)
    blocks = rows.view(batch, seq, n_kv_heads, group + 2, head_dim)
    q, k, v = scope["q"], scope["k"], scope["v"]
    assert torch.equal(q, blocks[:, :, :, :group].reshape(batch, seq, n_heads, head_dim))
    assert torch.equal(k, blocks[:, :, :, group]) and torch.equal(v, blocks[:, :, :, group + 1])
    shares = [
        t.untyped_storage().data_ptr() == rows.untyped_storage().data_ptr() for t in (q, k, v)
    ]
    assert shares == [group == 1, True, True]


def test_an_unknown_layout_is_an_error():
    with pytest.raises(EditError, match="row layout"):
        FuseQkv().apply(_llama(), layout="unknown")


def test_blocked_rows_are_regrouped_by_the_adapter():
    """Rows in blocks of q | v | k (codegen): the model splits the plain [q | k | v] and the
    adapter names the fused rows it regroups, with their block count and order."""
    package = _llama()
    SetQkvBias().apply(package, enabled=True)
    FuseQkv().apply(package, layout="blocked", blocks=4, order="qvk")
    files = package.render()
    assert (
        "q, k, v = qkv.split([qkv.shape[-1] - 2 * kv_size, kv_size, kv_size], dim=-1)"
        in (files["model.py"])
    )
    adapter = files["state_dict_adapter.py"]
    assert (
        'row_blocks = {"layers.{}.attention.wqkv.weight": (4, "qvk"), '
        '"layers.{}.attention.wqkv.bias": (4, "qvk")}'
    ) in adapter
    plain = _llama()
    FuseQkv().apply(plain)
    assert "row_blocks" not in plain.render()["state_dict_adapter.py"]


def test_blocked_rows_need_an_order_of_q_k_v():
    with pytest.raises(EditError, match="order"):
        FuseQkv().apply(_llama(), layout="blocked", blocks=4, order="qqk")
