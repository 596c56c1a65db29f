"""Give every layer a bottleneck adapter per language, each sample's applied after the FFN."""

from __future__ import annotations

import textwrap

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms._ffn_edits import adapter_rows
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    code_of,
    expression,
    is_name,
    run,
)

FIELDS = """
# language adapters: one bottleneck FFN per language in every layer, keyed by language
languages: tuple[str, ...] = ()  # lang_ids count positions in this tuple
default_language: str | None = None  # forward's language when given no lang_ids
adapter_dim: int = 0  # each adapter's bottleneck width
adapter_norm: bool = False  # the adapters norm their input with a norm of their own
adapter_reuse_norm: bool = True  # without one: with the FFN's norm (True) or not at all
adapter_residual_after_norm: bool = True  # the adapter's residual is its normed input
"""

BLOCK_INIT = """
# one bottleneck adapter per language (args.languages), each sample's run after the FFN
self.adapters = nn.ModuleDict({{language: {adapter} for language in args.languages}})
self.adapter_norm = None
if args.adapter_norm:  # a norm of the adapters' own
    self.adapter_norm = {norm}
self.adapter_reuse_norm = args.adapter_reuse_norm
self.adapter_residual_after_norm = args.adapter_residual_after_norm
"""

ADAPTER = '''
def language_adapter(self, x: torch.Tensor, lang_ids: torch.Tensor) -> torch.Tensor:
    """x plus the adapter of each sample's language (`lang_ids`: positions in
    args.languages, per sample or per token) applied to x normed by the adapters' own norm,
    else by the FFN's (adapter_reuse_norm), else as is; the residual added back is that
    normed x where adapter_residual_after_norm, else x."""
    if self.adapter_norm is not None:
        normed = self.adapter_norm(x)
    elif self.adapter_reuse_norm:
        normed = self.{ffn_norm}(x)
    else:
        normed = x
    residual = normed if self.adapter_residual_after_norm else x
    adapted = torch.zeros_like(normed)
    for index, adapter in enumerate(self.adapters.values()):
        rows = lang_ids == index
        adapted[rows] = adapter(normed[rows])
    return adapted + residual
'''

DEFAULT_LANGUAGE = """
if lang_ids is None:  # every sample in the default language
    if self.args.default_language is None:
        raise ValueError("no language: pass lang_ids or set args.default_language")
    index = self.args.languages.index(self.args.default_language)
    lang_ids = torch.full(tokens.shape[:1], index, device=tokens.device)
"""

PACKED = """
if cu_seqlens is not None and lang_ids is not None:
    raise NotImplementedError("packed documents run in args.default_language: no lang_ids")
"""

BLOCK_DOC = (
    "Every layer holds a bottleneck adapter per language of `args.languages` (all of them:"
    " a checkpoint's adapters load and save whole); `language_adapter` adds each sample's"
    " (chosen by `lang_ids`) to the FFN's residual sum before the norm that follows it."
)

FORWARD_DOC = (
    "`lang_ids`: each sample's language, its position in `args.languages` ((batch,), or"
    " (batch, seq) per token); None: every sample in `args.default_language` (HF's"
    " `set_default_language`), as packed documents always are."
)

_FEED_FORWARD = m.Attribute(value=m.Name("self"), attr=m.Name("feed_forward"))


class LanguageAdapters(Transform):
    """Every layer holds a bottleneck FFN per language (`adapters`, a ModuleDict keyed by
    `args.languages`, built as the FFN with width `adapter_dim`); after the FFN's residual
    sum, `language_adapter` adds each sample's adapter (chosen by `lang_ids`, positions in
    `args.languages`; `Model.forward` defaults them to `args.default_language`) of that sum
    normed (a norm of the adapters' own, the FFN's norm or none, as the config's switches
    say), then the block norms as before. The adapter maps every language's weights, so the
    package holds and round-trips all of them."""

    name = "language_adapters"

    def apply(self, package, features=None, *, language_adapters: dict) -> None:
        found = language_adapters
        _check_two_layer_ffn(package)
        block_norm, ffn_norm = _ffn_norm(package)
        adapter = _feed_forward_call(package)
        edits.add_args_field(package, FIELDS)
        for kwarg in (
            f"languages=tuple(hf_config.{found['languages']})",
            f"default_language=hf_config.{found['default']}",
            f"adapter_dim=hf_config.hidden_size // hf_config.{found['reduction']}",
            f"adapter_norm=hf_config.{found['own_norm']}",
            f"adapter_reuse_norm=hf_config.{found['reuse_norm']}",
            f"adapter_residual_after_norm=hf_config.{found['residual_after_norm']}",
        ):
            edits.add_hf_kwarg(package, kwarg)
        edits.append_to_method(
            package,
            "model.py",
            "TransformerBlock",
            "__init__",
            BLOCK_INIT.format(adapter=adapter, norm=block_norm),
        )
        edits.add_method_after_init(package, "TransformerBlock", ADAPTER.format(ffn_norm=ffn_norm))
        _document(package, "TransformerBlock", None, BLOCK_DOC, indent=4)
        edits.add_param(package, "TransformerBlock", "forward", "lang_ids: torch.Tensor")
        hits = edits.replace_expressions(
            package,
            "model.py",
            "TransformerBlock",
            "forward",
            lambda node: _is_ffn_sum_normed(node, ffn_norm),
            _adapt_before_norm,
        )
        if hits != 1:
            raise EditError(f"TransformerBlock.forward norms the FFN's residual sum {hits} times")
        _default_before_layers(package)
        _map_keys(package, features, found)


def _check_two_layer_ffn(package) -> None:
    """The adapters are built as the FFN: `w2(act(w1(x)))`, no third projection."""
    init = edits.find_method(package.module("model.py"), "FeedForward", "__init__")
    if init is None or not m.findall(init, _assigns_self("w1")):
        raise EditError("model.py has no FeedForward building self.w1")
    if m.findall(init, _assigns_self("w3")):
        raise EditError("FeedForward is gated (w3): the adapters are a two-layer MLP")


def _assigns_self(name: str) -> m.AssignTarget:
    return m.AssignTarget(target=m.Attribute(value=m.Name("self"), attr=m.Name(name)))


def _ffn_norm(package) -> tuple[str, str]:
    """(the call building the norm of the FFN's residual sum, its attribute): the block's
    `self.<norm>(h + self.feed_forward(h))`."""
    forward = edits.find_method(package.module("model.py"), "TransformerBlock", "forward")
    calls = [
        node
        for node in m.findall(forward or cst.Module([]), m.Call())
        if _is_ffn_sum_normed(node, None)
    ]
    if len(calls) != 1:
        raise EditError("TransformerBlock.forward does not norm one FFN residual sum")
    name = calls[0].func.attr.value
    init = edits.find_method(package.module("model.py"), "TransformerBlock", "__init__")
    built = [
        assign.value
        for assign in m.findall(init, m.Assign(targets=[_assigns_self(name)], value=m.Call()))
    ]
    if len(built) != 1:
        raise EditError(f"TransformerBlock builds no single self.{name}")
    return code_of(built[0]), name


def _is_ffn_sum_normed(node, norm: str | None) -> bool:
    """`self.<norm>(<a sum with self.feed_forward(...)>)` (any norm when `norm` is None)."""
    if not m.matches(
        node,
        m.Call(
            func=m.Attribute(value=m.Name("self"), attr=m.Name(norm) if norm else m.Name()),
            args=[m.Arg(value=m.BinaryOperation(operator=m.Add()))],
        ),
    ):
        return False
    return bool(m.findall(node.args[0].value, m.Call(func=_FEED_FORWARD)))


def _adapt_before_norm(call: cst.Call) -> cst.Call:
    total = code_of(call.args[0].value)
    value = expression(f"self.language_adapter({total}, lang_ids)")
    return call.with_changes(args=[call.args[0].with_changes(value=value)])


def _feed_forward_call(package) -> str:
    """`FeedForward(args.dim, args.hidden_dim)` as the block builds it, at width
    `args.adapter_dim`."""
    init = edits.find_method(package.module("model.py"), "TransformerBlock", "__init__")
    built = [
        assign.value
        for assign in m.findall(
            init or cst.Module([]), m.Assign(targets=[_assigns_self("feed_forward")])
        )
    ]
    if len(built) != 1 or not isinstance(built[0], cst.Call) or len(built[0].args) < 2:
        raise EditError("TransformerBlock builds no self.feed_forward = FeedForward(dim, width)")
    call = built[0]
    width = call.args[1].with_changes(value=expression("args.adapter_dim"))
    return code_of(call.with_changes(args=[call.args[0], width, *call.args[2:]]))


def _default_before_layers(package) -> None:
    """Model.forward takes `lang_ids` (None: the default language, set before the layer
    loop, which hands them to every layer); packed documents refuse them."""
    edits.add_param(package, "Model", "forward", "lang_ids: torch.Tensor | None = None")
    forward = edits.find_method(package.module("model.py"), "Model", "forward")
    loops = [s for s in (forward.body.body if forward else ()) if _loops_over_layers(s)]
    if len(loops) != 1 or not isinstance(loops[0].target, cst.Name):
        raise EditError("Model.forward has no single `for layer in self.layers` loop")
    layer = loops[0].target.value
    packed = any(_runs_packed(s) for s in forward.body.body)
    run(
        package,
        "model.py",
        InsertStatements("Model", "forward", _runs_packed, DEFAULT_LANGUAGE)
        if packed
        else InsertStatements("Model", "forward", _loops_over_layers, DEFAULT_LANGUAGE, True),
    )
    hits = edits.replace_expressions(
        package,
        "model.py",
        "Model",
        "forward",
        lambda node: isinstance(node, cst.Call) and is_name(node.func, layer),
        lambda call: edits.with_arg(call, "lang_ids"),
    )
    if hits != 1:
        raise EditError(f"the layer loop calls {layer!r} {hits} times")
    if packed:
        run(package, "model.py", InsertStatements("Model", "forward", _runs_packed, PACKED, True))
    _document(package, "Model", "forward", FORWARD_DOC, indent=8)


def _loops_over_layers(statement) -> bool:
    layers = m.Attribute(value=m.Name("self"), attr=m.Name("layers"))
    return isinstance(statement, cst.For) and (
        m.matches(statement.iter, layers) or bool(m.findall(statement.iter, layers))
    )


def _runs_packed(statement) -> bool:
    """`if cu_seqlens is not None: return forward_packed(...)`."""
    return isinstance(statement, cst.If) and bool(
        m.findall(statement.body, m.Call(func=m.Name("forward_packed")))
    )


def _document(package, class_name: str, method: str | None, paragraph: str, indent: int) -> None:
    """Append `paragraph` to the docstring of `class_name` (or of its `method`), or give it
    one."""
    text = _wrapped(paragraph, indent)

    def documented(body: list) -> list:
        first = body[0] if body else None
        doc = _docstring(first)
        if doc is None:
            return [cst.parse_statement(f'"""{text}"""\n'), *body]
        value = doc.rstrip() + "\n\n" + " " * indent + text
        string = cst.SimpleString(f'"""{value}"""')
        return [first.with_changes(body=[first.body[0].with_changes(value=string)]), *body[1:]]

    class _Doc(edits.InMethod):
        def leave_ClassDef(self, original, updated):
            hit = method is None and self._stack == [class_name]
            self._stack.pop()
            if not hit:
                return updated
            self.hits += 1
            return updated.with_changes(
                body=updated.body.with_changes(body=documented(list(updated.body.body)))
            )

        def leave_FunctionDef(self, original, updated):
            hit = method is not None and self._stack == [class_name, method]
            self._stack.pop()
            if not hit:
                return updated
            self.hits += 1
            return updated.with_changes(
                body=updated.body.with_changes(body=documented(list(updated.body.body)))
            )

    run(package, "model.py", _Doc(class_name, method))


def _docstring(statement) -> str | None:
    if m.matches(
        statement, m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString())])
    ) and statement.body[0].value.value.startswith('"""'):
        return statement.body[0].value.value[3:-3]
    return None


def _wrapped(text: str, indent: int, width: int = 100) -> str:
    """`text` wrapped for a docstring indented by `indent` (later lines indented)."""
    lines = textwrap.wrap(text, width - indent)
    return ("\n" + " " * indent).join(lines)


def _map_keys(package, features, found: dict) -> None:
    prefix = features.state_dict.prefix if features is not None else "model.layers"
    owner = f"{prefix}.{{}}.{found['owner']}"
    rows = [
        (f"{owner}.{found['bank']}.{{*}}.{hf}.{kind}", f"layers.{{}}.adapters.{{*}}.{house}.{kind}")
        for hf, house in ((found["down"], "w1"), (found["up"], "w2"))
        for kind in ("weight", "bias")
    ]
    rows += [
        (f"{owner}.{found['own_norm_module']}.{kind}", f"layers.{{}}.adapter_norm.{kind}")
        for kind in ("weight", "bias")
    ]
    houses = [
        house for _, house in adapter_rows(package) if house and house.startswith("layers.{}.")
    ]
    if not houses:
        raise EditError("state_dict_adapter.py has no layer rows")
    edits.insert_rows_after(package, houses[-1], rows)
