"""CompressedKv: keys (the values) extended by entries pooled from windows of tokens."""

from types import SimpleNamespace

import pytest
import torch

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.catalog import TRANSFORMS
from codegen.transforms.compressed_kv import COMPRESSOR, OVERLAP, CompressedKv
from codegen.transforms.edits import EditError

POOLED = {
    "module": "compressor",
    "kv": "kv_proj",
    "gate": "gate_proj",
    "bias": "position_bias",
    "norm": "kv_norm",
    "rate": 'hf_config.compress_rates["pooled_attention"]',
    "eps": "rms_norm_eps",
    "group": "far",
    "kind": "pooled_attention",
    "layers": [1, 3],
}
FEATURES = SimpleNamespace(rope=SimpleNamespace(layer_groups=None, group="far", fp32=True))


def _before() -> SourcePackage:
    """qwen3 whose rotated keys are the values, written out with sinks (a float table of
    the keys each query does not see)."""
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    TRANSFORMS["values_are_keys"]().apply(package)
    TRANSFORMS["add_attention_sinks"]().apply(package)
    return package


def test_reference_qwen3_before_and_after():
    package = _before()
    before = package.render()["model.py"]
    assert "class Compressor" not in before and "window_rope" not in before
    CompressedKv().apply(package, FEATURES, pooled=POOLED)
    files = package.render()
    model = files["model.py"]
    assert model.index("class Compressor(nn.Module):") < model.index("class Attention")
    assert "self.norm = RMSNorm(head_dim, eps)" in model
    assert "pooled = apply_rotary(pooled.float(), cos, sin).to(pooled.dtype)" in model
    build = "Compressor(args.dim, args.head_dim, args.compress_rate, args.compress_norm_eps)\n"
    assert (
        f"            {build}"
        "            if args.layer_types[layer_id] == args.compressed_layer_type\n"
        "            else None\n"
    ) in model
    assert "pooled = self.compressor(x, window_rope)" in model
    assert "seen = self.compressor.seen(positions, pooled.shape[2])" in model
    assert "k = v = torch.cat([k, pooled], dim=2)" in model
    # the entries' float table is written once, straight into its place beside the keys'
    assert 'hidden.new_full(seen.shape, float("-inf")).masked_fill_(seen, 0.0)' in model
    assert "unseen" not in model and "~seen" not in model
    # the entries join after the keys became the values, before the heads are repeated
    attention = model[model.index("class Attention") :]
    assert attention.index("v = k") < attention.index("self.compressor(x")
    assert attention.index("self.compressor(x") < attention.index("repeat_interleave")
    assert "self.rotary(torch.arange(seq, device=tokens.device)[None])" in model
    assert 'args.layer_types[layer_id] in ("sliding_attention", "pooled_attention")' in model
    # the window is built where the layers are all pooled too
    assert '{"sliding_attention", "pooled_attention"} & set(self.args.layer_types)' in model
    args = files["args.py"]
    assert 'LAYER_TYPES = ("full_attention", "sliding_attention", "pooled_attention")' in args
    assert 'compress_rate=hf_config.compress_rates["pooled_attention"]' in args
    assert "compress_norm_eps=hf_config.rms_norm_eps" in args
    adapter = files["state_dict_adapter.py"]
    for hf, house in (
        ("kv_proj.weight", "wkv.weight"),
        ("gate_proj.weight", "wgate.weight"),
        ("position_bias", "slot_bias"),
        ("kv_norm.weight", "norm.weight"),
    ):
        hf_key, house_key = f"self_attn.compressor.{hf}", f"attention.compressor.{house}"
        row = f'"model.layers.{{}}.{hf_key}": "layers.{{}}.{house_key}"'
        assert row in adapter, row


def test_the_other_group_turns_with_the_second_table():
    package = _before()
    features = SimpleNamespace(
        rope=SimpleNamespace(layer_groups={"other": "far"}, group="near", fp32=False)
    )
    with pytest.raises(EditError):  # no table of group "far" when nothing builds it
        CompressedKv().apply(
            _before(),
            SimpleNamespace(rope=SimpleNamespace(layer_groups=None, group="near")),
            pooled=POOLED,
        )
    CompressedKv().apply(package, features, pooled=POOLED)
    model = package.render()["model.py"]
    assert "self.other_rotary(torch.arange(seq" in model
    assert "pooled = apply_rotary(pooled, cos, sin)" in model  # turned in its own dtype


def test_keys_apart_from_the_values_are_an_error():
    package = SourcePackage.from_directory(references_dir() / "qwen3")
    TRANSFORMS["add_attention_sinks"]().apply(package)
    with pytest.raises(EditError, match="keys that are the values"):
        CompressedKv().apply(package, FEATURES, pooled=POOLED)


def _classes(sparse: bool = False) -> dict:
    """The compressor classes as written (with the indexer where `sparse`), their entries'
    norm and rotation left out."""
    namespace = {"torch": torch, "nn": torch.nn, "ModelArgs": object}
    code = COMPRESSOR + (OVERLAP.replace("QROTATE", "q") if sparse else "")
    namespace["Unit"] = lambda *sizes: torch.nn.Identity()  # the entries' norm left out
    exec(code.replace("NORM", "Unit").replace("ROTATE", "pooled"), namespace)
    return namespace


def _compressor(rate: int, dim: int):
    return _classes()["Compressor"](dim, dim, rate, 1e-6)


def test_windows_pool_by_a_softmax_over_the_gate_and_slot_bias():
    torch.manual_seed(0)
    compressor = _compressor(rate=3, dim=4)
    torch.nn.init.normal_(compressor.slot_bias)
    x = torch.randn(2, 7, 4)  # two whole windows; the 7th token makes none
    positions = torch.arange(7)[None] + 1
    tables = (torch.ones(1, 7, 4), torch.zeros(1, 7, 4))
    pooled = compressor(x, tables)
    seen = compressor.seen(positions, pooled.shape[2])
    assert pooled.shape == (2, 1, 2, 4)
    for w in range(2):
        window = x[:, 3 * w : 3 * w + 3]
        weights = (compressor.wgate(window) + compressor.slot_bias).softmax(dim=1)
        expected = (compressor.wkv(window) * weights).sum(dim=1)
        torch.testing.assert_close(pooled[:, 0, w], expected)
    # position p sees window w once w < (p + 1) // 3: positions 1..7
    expected_seen = torch.tensor([[w < (p + 1) // 3 for w in range(2)] for p in range(1, 8)])
    assert torch.equal(seen[0, 0], expected_seen)


SPARSE = {
    "kv": "kv_proj",
    "gate": "gate_proj",
    "bias": "position_bias",
    "norm": "kv_norm",
    "rate": 'hf_config.compress_rates["sifted_attention"]',
    "eps": "rms_norm_eps",
    "group": "far",
    "indexer": {
        "module": "indexer",
        "kv": "kv_proj",
        "gate": "gate_proj",
        "bias": "position_bias",
        "norm": "kv_norm",
        "rate": 'hf_config.compress_rates["sifted_attention"]',
        "q": "q_b_proj",
        "weights": "scorer.weights_proj",
        "heads": "hf_config.index_n_heads",
        "head_dim": "hf_config.index_head_dim",
        "topk": "hf_config.index_topk",
    },
    "kind": "sifted_attention",
    "layers": [2],
}
LOW_RANK = {
    "a": "q_a_proj",
    "a_norm": "q_a_norm",
    "b": "q_b_proj",
    "b_norm": "q_b_norm",
    "rank": "q_lora_rank",
    "eps": "rms_norm_eps",
}


def test_sparse_kind_before_and_after():
    """The layers of the sparse kind build the overlapping compressor in the same attribute
    and an indexer, which reads the query latent (kept by name) and picks what they see."""
    package = _before()
    TRANSFORMS["low_rank_q"]().apply(package, low_rank=LOW_RANK)
    before = package.render()["model.py"]
    assert "q_latent" not in before and "class Indexer" not in before
    CompressedKv().apply(package, FEATURES, pooled={**POOLED, "sparse": SPARSE})
    files = package.render()
    model = files["model.py"]
    assert model.index("class OverlapCompressor") < model.index("class Indexer")
    assert model.index("class Indexer") < model.index("class Attention")
    assert "self.norm = RMSNorm(head_dim, eps)" in model
    assert "q = apply_rotary(q.float(), cos, sin).to(q.dtype).transpose(1, 2)" in model
    attention = model[model.index("class Attention") :]
    assert "if args.layer_types[layer_id] == args.overlap_layer_type:" in attention
    assert "q_latent = self.q_a_norm(self.wq_a(x))" in attention
    assert "self.wq_b(q_latent)" in attention
    picks = "seen = self.indexer(x, q_latent, positions, (cos, sin), window_rope)"
    assert attention.index("self.compressor(x") < attention.index(picks)
    assert attention.index(picks) < attention.index("torch.cat([k, pooled]")
    # the compressor's own visibility is worked out only where no indexer picks
    passed = "            if self.indexer is None:  # every window the query has passed\n"
    seen = "seen = self.compressor.seen(positions, pooled.shape[2])\n"
    assert f"{passed}                {seen}" in model
    assert model.count("seen(positions") == 1
    # the overlapping compressor is the pooling one with its own slots: written once
    assert "class OverlapCompressor(Compressor):" in model
    assert model.count("windows = x.shape[1] // self.rate") == 1
    assert model.count(".softmax(dim=2, dtype=torch.float32)") == 1
    assert "keys = self.compressor(x, window_rope)" in model
    assert "{self.args.compressed_layer_type, self.args.overlap_layer_type}" in model
    assert '("sliding_attention", "pooled_attention", "sifted_attention")' in model
    args = files["args.py"]
    assert '"pooled_attention", "sifted_attention")' in args.replace("\n    ", " ")
    for kwarg in (
        'overlap_rate=hf_config.compress_rates["sifted_attention"]',
        "index_n_heads=hf_config.index_n_heads",
        "index_head_dim=hf_config.index_head_dim",
        "index_topk=hf_config.index_topk",
    ):
        assert kwarg in args, kwarg
    adapter = files["state_dict_adapter.py"]
    for hf, house in (
        ("indexer.kv_proj.weight", "indexer.compressor.wkv.weight"),
        ("indexer.position_bias", "indexer.compressor.slot_bias"),
        ("indexer.q_b_proj.weight", "indexer.wq_b.weight"),
        ("indexer.scorer.weights_proj.weight", "indexer.weights_proj.weight"),
    ):
        row = f'"model.layers.{{}}.self_attn.compressor.{hf}": "layers.{{}}.attention.{house}"'
        assert row in adapter, row


def test_sparse_kind_needs_a_query_latent():
    with pytest.raises(EditError):
        CompressedKv().apply(_before(), FEATURES, pooled={**POOLED, "sparse": SPARSE})


def test_overlapping_windows_pool_the_previous_first_halves_with_their_own_second():
    torch.manual_seed(0)
    compressor = _classes(sparse=True)["OverlapCompressor"](4, 3, 2, 1e-6)
    torch.nn.init.normal_(compressor.slot_bias)
    x = torch.randn(1, 7, 4)  # three whole windows of 2
    pooled = compressor(x, (torch.ones(1, 7, 2), torch.zeros(1, 7, 2)))
    seen = compressor.seen(torch.arange(7)[None], pooled.shape[2])
    assert pooled.shape == (1, 1, 3, 3)
    kv, gate = compressor.wkv(x[:, :6]), compressor.wgate(x[:, :6])
    gate = gate + compressor.slot_bias.repeat(3, 1)
    for w in range(3):
        own = slice(2 * w, 2 * w + 2)
        kvs, gates = [kv[:, own, 3:]], [gate[:, own, 3:]]
        if w:  # the previous window's first halves
            prev = slice(2 * w - 2, 2 * w)
            kvs, gates = [kv[:, prev, :3], *kvs], [gate[:, prev, :3], *gates]
        weights = torch.cat(gates, dim=1).softmax(dim=1)
        expected = (torch.cat(kvs, dim=1) * weights).sum(dim=1)
        torch.testing.assert_close(pooled[:, 0, w], expected)
    assert torch.equal(seen[0, 0, :, 0], torch.arange(7) >= 1)
