"""DropUnreadParameters: before/after on the references as the rules leave them (the block's
`layer_id` once every layer is MoE, the weightless norm's `dim`), and the classes it leaves
alone."""

import textwrap

import libcst as cst
import libcst.matchers as m

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.drop_unread_parameters import DropUnreadParameters
from codegen.transforms.edits import findall
from codegen.transforms.every_layer_moe import EveryLayerMoe
from codegen.transforms.norm_weight import DropNormWeight
from codegen.transforms.testing import package_of


def _package(reference):
    return SourcePackage.from_directory(references_dir() / reference)


def _init_params(module: cst.Module, cls: str) -> list[str]:
    (init,) = findall(
        next(iter(findall(module, m.ClassDef(name=m.Name(cls))))),
        m.FunctionDef(name=m.Name("__init__")),
    )
    return [p.name.value for p in [*init.params.params, *init.params.kwonly_params]]


def _calls(module: cst.Module, func: str) -> list[str]:
    return [cst.Module([]).code_for_node(c) for c in findall(module, m.Call(func=m.Name(func)))]


def test_the_block_of_an_every_layer_moe_package_takes_no_layer_id():
    package = _package("qwen3_moe")
    EveryLayerMoe().apply(package)  # drops `self.is_moe = args.is_moe_layer(layer_id)`
    model = package.module("model.py")
    assert _init_params(model, "TransformerBlock") == ["self", "args", "layer_id"]
    DropUnreadParameters().apply(package)
    model = package.module("model.py")
    assert _init_params(model, "TransformerBlock") == ["self", "args"]
    (generator,) = findall(model, m.GeneratorExp(elt=m.Call(func=m.Name("TransformerBlock"))))
    assert cst.Module([]).code_for_node(generator) == (
        "TransformerBlock(args) for _ in range(args.n_layers)"
    )


def test_a_weightless_norm_takes_no_width():
    package = _package("llama")
    DropNormWeight().apply(package)  # RMSNorm(dim, eps) -> PlainRMSNorm(dim, eps)
    assert _init_params(package.module("model.py"), "PlainRMSNorm") == ["self", "dim", "eps"]
    DropUnreadParameters().apply(package)
    model = package.module("model.py")
    assert _init_params(model, "PlainRMSNorm") == ["self", "eps"]
    assert set(_calls(model, "PlainRMSNorm")) == {"PlainRMSNorm(args.norm_eps)"}


def test_a_reference_reads_every_parameter_it_takes():
    for reference in ("llama", "qwen3_moe", "deepseek_v3"):
        package = _package(reference)
        before = package.render()
        DropUnreadParameters().apply(package)
        assert package.render() == before, reference


def test_a_parameter_handed_down_unread_goes_at_every_level():
    model = """
    class Attention(nn.Module):
        def __init__(self, args, layer_id):
            super().__init__()
            self.wq = nn.Linear(args.dim, args.dim)


    class Block(nn.Module):
        def __init__(self, args, layer_id):
            super().__init__()
            self.attention = Attention(args, layer_id=layer_id)


    class Model(nn.Module):
        def __init__(self, args, unused):
            super().__init__()
            self.layers = [Block(args, i) for i in range(args.n_layers)]
    """
    package = package_of({"model.py": textwrap.dedent(model)})
    DropUnreadParameters().apply(package)
    module = package.module("model.py")
    assert _init_params(module, "Attention") == ["self", "args"]
    assert _init_params(module, "Block") == ["self", "args"]
    assert _calls(module, "Attention") == ["Attention(args)"]
    assert "[Block(args) for _ in range(args.n_layers)]" in module.code
    # the model is built by its callers, not by the package: its signature is theirs
    assert _init_params(module, "Model") == ["self", "args", "unused"]


def test_keyword_only_parameters_and_the_bare_star_go_too():
    model = """
    class Norm(nn.Module):
        def __init__(self, eps, *, dim):
            super().__init__()
            self.eps = eps


    class Model(nn.Module):
        def __init__(self, args):
            super().__init__()
            self.norm = Norm(args.norm_eps, dim=args.dim)
    """
    package = package_of({"model.py": textwrap.dedent(model)})
    DropUnreadParameters().apply(package)
    module = package.module("model.py")
    assert "def __init__(self, eps):" in module.code
    assert _calls(module, "Norm") == ["Norm(args.norm_eps)"]


def test_classes_built_where_their_arguments_cannot_be_seen_keep_their_parameters():
    model = """
    class Listed(nn.Module):
        def __init__(self, dim, eps):
            super().__init__()
            self.eps = eps


    class Unpacked(nn.Module):
        def __init__(self, dim, eps):
            super().__init__()
            self.eps = eps


    class Effect(nn.Module):
        def __init__(self, dim, eps):
            super().__init__()
            self.eps = eps


    class Forwarding(nn.Module):
        def __init__(self, dim, **kwargs):
            super().__init__(**kwargs)


    NORMS = {"listed": Listed}


    class Model(nn.Module):
        def __init__(self, args):
            super().__init__()
            self.a = Listed(args.dim, args.norm_eps)
            self.b = Unpacked(*args.sizes)
            self.c = Effect(next(widths), args.norm_eps)
            self.d = Forwarding(args.dim, eps=args.norm_eps)
    """
    package = package_of({"model.py": textwrap.dedent(model)})
    before = package.render()
    DropUnreadParameters().apply(package)
    assert package.render() == before
