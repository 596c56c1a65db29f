"""DifferentialAttention: before/after on the llama reference, and the maths on one layer."""

import math

import pytest
import torch
import torch.nn.functional as F

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.differential_attention import DifferentialAttention
from codegen.transforms.edits import EditError

FOUND = {
    "lambda_init": "0.8 - 0.6 * math.exp(-0.3 * layer_id)",
    "lambdas": ("lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"),
    "init_std": "lambda_std_dev",
}


def _llama():
    return SourcePackage.from_directory(references_dir() / "llama")


def test_before_one_map_per_head():
    model = _llama().render()["model.py"]
    assert "lambda" not in model
    assert "class Attention(nn.Module):\n    def __init__(self, args: ModelArgs):" in model


def test_after_the_layer_index_reaches_the_attention_and_the_lambdas_load():
    package = _llama()
    DifferentialAttention().apply(package, differential=FOUND)
    files = package.render()
    model = files["model.py"]
    assert "def __init__(self, args: ModelArgs, layer_id: int):" in model
    assert "self.attention = Attention(args, layer_id)" in model
    assert "TransformerBlock(args, i) for i in range(args.n_layers)" in model
    assert "self.lambda_init = 0.8 - 0.6 * math.exp(-0.3 * layer_id)" in model
    assert "import math\n" in model
    assert "out = out1 - lambda_full * out2" in model
    adapter = files["state_dict_adapter.py"]
    for name in FOUND["lambdas"]:
        assert f'"model.layers.{{}}.self_attn.{name}": "layers.{{}}.attention.{name}"' in adapter
    assert "lambda_std=hf_config.lambda_std_dev" in files["args.py"]


def test_hf_names_of_the_vectors_are_mapped_in_order():
    package = _llama()
    renamed = {**FOUND, "lambdas": ("a_q", "a_k", "b_q", "b_k"), "init_std": None}
    DifferentialAttention().apply(package, differential=renamed)
    files = package.render()
    adapter = files["state_dict_adapter.py"]
    assert '"model.layers.{}.self_attn.b_q": "layers.{}.attention.lambda_q2"' in adapter
    assert "lambda_std" not in files["args.py"]  # no config field: they start like the rest
    assert "init_parameters" not in files["model.py"]


def test_a_malformed_finding_is_refused():
    with pytest.raises(EditError):
        DifferentialAttention().apply(_llama(), differential={"lambda_init": "0.5"})


def _reference(q, k, v, lq1, lk1, lq2, lk2, lambda_init, eps):
    """The paper's form, written out: per head pair (i, n/2 + i), two causal maps over the
    same values [v_a | v_b] (the kv head's two halves), the second scaled and subtracted."""
    heads, kv = q.shape[1], v.shape[1]
    group = heads // kv
    half = heads // 2
    lam = math.exp(float((lq1 * lk1).sum())) - math.exp(float((lq2 * lk2).sum())) + lambda_init
    outs = []
    for i in range(half):
        pair = []
        for h in (i, half + i):
            g = h // group  # the kv head this query head reads
            a = v[:, g % (kv // 2)]
            b = v[:, kv // 2 + g % (kv // 2)]
            values = torch.cat((a, b), dim=-1)
            pair.append(
                F.scaled_dot_product_attention(
                    q[:, h : h + 1], k[:, g : g + 1], values[:, None], is_causal=True
                )[:, 0]
            )
        diff = pair[0] - lam * pair[1]
        normed = diff * torch.rsqrt(diff.pow(2).mean(-1, keepdim=True) + eps)
        outs.append((1 - lambda_init) * normed)
    return torch.stack(outs, dim=1)  # (batch, n/2, seq, 2 * head_dim)


def test_the_generated_attention_matches_the_pairwise_form():
    package = _llama()
    DifferentialAttention().apply(package, differential=FOUND)
    code = package.render()["model.py"]
    start = code.index("        v1, v2 = v.chunk(2, dim=1)")
    end = code.index("        return self.wo(")
    body = "\n".join(line[8:] for line in code[start:end].splitlines())
    torch.manual_seed(0)
    batch, heads, kv, seq, dim = 2, 4, 2, 5, 6
    q, k, v = (torch.randn(batch, n, seq, dim) for n in (heads, kv, kv))
    lambdas = [torch.randn(dim) * 0.3 for _ in range(4)]

    class Module:
        lambda_q1, lambda_k1, lambda_q2, lambda_k2 = lambdas
        lambda_init = 0.8 - 0.6 * math.exp(-0.3 * 2)
        n_heads, n_kv_heads = heads, kv
        norm_eps = 1e-5

    scope = {"torch": torch, "F": F, "self": Module(), "q": q, "k": k, "v": v}
    exec(body, scope)
    expected = _reference(q, k, v, *lambdas, Module.lambda_init, Module.norm_eps)
    # laid out (batch, seq, heads, features), as the output projection reads it
    torch.testing.assert_close(scope["out"], expected.transpose(1, 2), rtol=1e-5, atol=1e-5)


def test_the_output_projection_reads_a_view_not_a_copy():
    # joined by heads, out.transpose(1, 2).reshape(..) copied every layer's attention output
    # (diffllama wrote 1.009x HF's bytes); joined by sequence, the reshape is a view
    package = _llama()
    DifferentialAttention().apply(package, differential=FOUND)
    code = package.render()["model.py"]
    assert "return self.wo(out.reshape(batch, seq, -1))" in code
    start = code.index("        v1, v2 = v.chunk(2, dim=1)")
    end = code.index("        return self.wo(")
    body = "\n".join(line[8:] for line in code[start:end].splitlines())

    class Module:
        lambda_q1 = lambda_k1 = lambda_q2 = lambda_k2 = torch.zeros(6)
        lambda_init = 0.5
        n_heads, n_kv_heads = 4, 2
        norm_eps = 1e-5

    q, k, v = (torch.randn(2, n, 5, 6) for n in (4, 2, 2))
    scope = {"torch": torch, "F": F, "self": Module(), "q": q, "k": k, "v": v}
    exec(body, scope)
    out = scope["out"]
    assert out.reshape(2, 5, -1).data_ptr() == out.data_ptr()
    assert out.is_contiguous()


def test_each_sdpa_call_reads_a_value_as_wide_as_its_queries():
    # a value twice as wide as q/k sends CPU SDPA to its unfused path (diffllama 1.10x HF)
    package = _llama()
    DifferentialAttention().apply(package, differential=FOUND)
    code = package.render()["model.py"]
    start = code.index("        v1, v2 = v.chunk(2, dim=1)")
    end = code.index("        return self.wo(")
    body = "\n".join(line[8:] for line in code[start:end].splitlines())
    widths = []

    def sdpa(q, k, v, **kwargs):
        widths.append((q.shape[-1], v.shape[-1]))
        return F.scaled_dot_product_attention(q, k, v, **kwargs)

    class Module:
        lambda_q1 = lambda_k1 = lambda_q2 = lambda_k2 = torch.zeros(6)
        lambda_init = 0.5
        n_heads, n_kv_heads = 4, 2
        norm_eps = 1e-5

    class Functional:
        scaled_dot_product_attention = staticmethod(sdpa)
        rms_norm = staticmethod(F.rms_norm)

    q, k, v = (torch.randn(2, n, 5, 6) for n in (4, 2, 2))
    exec(body, {"torch": torch, "F": Functional, "self": Module(), "q": q, "k": k, "v": v})
    assert widths == [(6, 6), (6, 6)]
