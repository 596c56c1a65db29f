"""DropKvHeads: before/after on attentions whose kv heads are their query heads."""

import textwrap

import libcst as cst
import libcst.matchers as m

from codegen.transforms.drop_kv_heads import DropKvHeads
from codegen.transforms.edits import findall
from codegen.transforms.testing import package_of

ARGS = """
from dataclasses import dataclass


@dataclass
class ModelArgs:
    dim: int = 64
    n_heads: int = 4
    n_kv_heads: int = 4  # one per query head
    head_dim: int = 16

    def __post_init__(self):
        if self.n_kv_heads != self.n_heads:
            raise NotImplementedError("each query head needs a kv head of its own")

    @classmethod
    def from_hf_config(cls, hf_config):
        return cls(
            dim=hf_config.hidden_size,
            n_heads=hf_config.num_attention_heads,
            n_kv_heads={kv},
            head_dim=hf_config.head_dim,
        )
"""

FUSED = """
class Attention(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.n_heads = args.n_heads
        self.n_kv_heads = args.n_kv_heads
        self.head_dim = args.head_dim
        self.wqkv = nn.Linear(args.dim, (args.n_heads + 2 * args.n_kv_heads) * args.head_dim)

    def forward(self, x):
        batch, seq, _ = x.shape
        qkv = self.wqkv(x)
        kv_size = qkv.shape[-1] // (self.n_heads // self.n_kv_heads + 2)
        return kv_size
"""

GROUPED = """
class Attention(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.n_heads = args.n_heads
        self.n_kv_heads = args.n_kv_heads
        self.head_dim = args.head_dim

    def forward(self, qkv):
        batch, seq, _ = qkv.shape
        group = self.n_heads // self.n_kv_heads
        qkv = qkv.view(batch, seq, -1, group + 2, self.head_dim)
        return qkv.split([group, 1, 1], dim=3)
"""


def _package(model: str, kv: str = "hf_config.num_attention_heads"):
    return package_of({"model.py": textwrap.dedent(model), "args.py": ARGS.format(kv=kv)})


def _statement(module: cst.Module, code: str) -> bool:
    wanted = cst.parse_statement(code)
    return any(s.deep_equals(wanted) for s in findall(module, m.SimpleStatementLine()))


def _names_kv(module: cst.Module) -> bool:
    return bool(findall(module, m.Name("n_kv_heads")))


def test_a_fused_projection_reads_the_query_heads_alone():
    package = _package(FUSED)
    DropKvHeads().apply(package)
    model = package.module("model.py")
    assert not _names_kv(model)
    assert _statement(model, "self.wqkv = nn.Linear(args.dim, 3 * args.n_heads * args.head_dim)")
    assert _statement(model, "kv_size = qkv.shape[-1] // 3")
    args = package.module("args.py")
    assert not findall(args, m.FunctionDef(name=m.Name("__post_init__")))
    # the field and its mapping are tidy's to drop, once nothing reads them
    assert len(findall(args, m.Name("n_kv_heads"))) == 2


def test_a_group_of_one_is_read_as_the_number():
    package = _package(GROUPED)
    DropKvHeads().apply(package)
    model = package.module("model.py")
    assert not _names_kv(model) and not findall(model, m.Name("group"))
    assert _statement(model, "qkv = qkv.view(batch, seq, -1, 3, self.head_dim)")
    assert _statement(model, "return qkv.split([1, 1, 1], dim=3)")


def test_grouped_query_heads_keep_their_count():
    package = _package(FUSED, kv="hf_config.num_key_value_heads")
    before = package.render()
    DropKvHeads().apply(package)
    assert package.render() == before


def test_another_use_of_the_count_keeps_it():
    package = _package(FUSED + "\n\ndef build(args):\n    return Attention(n_kv_heads=4)\n")
    before = package.render()
    DropKvHeads().apply(package)
    assert package.render() == before
