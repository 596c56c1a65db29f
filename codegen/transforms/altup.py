"""Keep the residual stream as several AltUp streams: each layer runs on the active stream's
prediction and corrects every stream from its output."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.transforms import _attention_edits as edits
from codegen.transforms.base import Transform
from codegen.transforms.edits import (
    EditError,
    InsertStatements,
    ReplaceStatements,
    assigns,
    code_of,
    dotted,
    run,
    statements,
)
from codegen.transforms.per_layer_inputs import _block_norm, _resized

FIELDS = """
# AltUp: the residual stream kept as `altup_streams` streams; each layer runs on the
# prediction of stream `altup_active` and corrects them all
altup_streams: int = 4
altup_active: int = 0
altup_coef_clip: float | None = None  # the coefficient weights' clip while training
"""

ALTUP = '''
class AltUp(nn.Module):
    """Alternating updates over the residual streams (streams, batch, seq, dim).

    `predict` gives each stream plus a per-token mix of all the streams, the mix weighted
    from the router's reading of the active stream; the layer runs on the active prediction;
    `correct` adds each prediction its weighted share of how far the layer's output moved
    from the active prediction.
    """

    def __init__(self, args: ModelArgs):
        super().__init__()
        self.dim = args.dim
        self.streams = args.altup_streams
        self.active = args.altup_active
        self.coef_clip = args.altup_coef_clip
        self.output_scale = nn.Parameter(torch.zeros(args.dim))
        self.correction = nn.Linear(self.streams, self.streams, bias=False)
        self.prediction = nn.Linear(self.streams, self.streams**2, bias=False)
        self.router = nn.Linear(args.dim, self.streams, bias=False)
        self.router_norm = {norm}

    def init_parameters(self, std: float) -> None:
        """The output scale starts at zero, as HF's init sets it."""
        nn.init.zeros_(self.output_scale)

    def route(self, x: torch.Tensor) -> torch.Tensor:
        """The router's per-token reading of `x`: tanh (in fp32) of the projected norm of `x`
        over dim, the 1 / dim in x's dtype."""
        scaled = self.router_norm(x) * torch.tensor(self.dim**-1.0, dtype=x.dtype)
        return torch.tanh(self.router(scaled).float()).type_as(x)

    def predict(self, streams: torch.Tensor) -> torch.Tensor:
        """Stream i plus the sum over j of coefs[i, j] x stream j, per token."""
        if self.training and self.coef_clip is not None:
            # the prediction weights themselves are clipped in place while training
            self.prediction.weight.data.clamp_(-self.coef_clip, self.coef_clip)
        n = self.streams
        coefs = self.prediction(self.route(streams[self.active])).unflatten(-1, (n, n))
        # (batch, seq, dim, j) @ (batch, seq, j, i)
        mixed = torch.matmul(streams.permute(1, 2, 3, 0), coefs.transpose(-1, -2))
        return streams + mixed.permute(3, 0, 1, 2)

    def correct(self, predictions: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Each prediction plus (1 + its coefficient) x the layer output's innovation over
        the active prediction, the coefficients read from the output."""
        weight = self.correction.weight
        if self.training and self.coef_clip is not None:
            weight = weight.clamp(-self.coef_clip, self.coef_clip)
        coefs = F.linear(self.route(out), weight) + 1.0  # (batch, seq, streams)
        innovation = out - predictions[self.active]
        return predictions + innovation * coefs.permute(2, 0, 1).unsqueeze(-1)
'''

RMS_MATCHED = '''
def rms_matched(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """`x` rescaled to the RMS `target`, its own RMS floored at sqrt(1e-5)."""
    rms = torch.sqrt(torch.mean(x**2, dim=-1, keepdim=True).clamp(min=1e-5))
    return x * target / rms
'''

MODEL_INIT = """
# AltUp: the streams besides the first start as projections of the embedding, and are
# projected back before the streams are averaged
self.altup_in = nn.ModuleList(
    nn.Linear(args.dim, args.dim, bias=False) for _ in range(args.altup_streams - 1)
)
self.altup_out = nn.ModuleList(
    nn.Linear(args.dim, args.dim, bias=False) for _ in range(args.altup_streams - 1)
)
"""

EXPAND = '''
def expand_streams(self, h: torch.Tensor) -> torch.Tensor:
    """The residual streams (streams, batch, seq, dim): `h` and its projections, each
        rescaled to h's RMS."""
    target = torch.mean(h**2, dim=-1, keepdim=True) ** 0.5
    return torch.stack([h, *(rms_matched(project(h), target) for project in self.altup_in)])
'''

MERGE = '''
def merge_streams(self, streams: torch.Tensor) -> torch.Tensor:
    """The mean of the first stream and the others projected back, each rescaled to the
        first's RMS."""
    target = torch.mean(streams[0] ** 2, dim=-1, keepdim=True) ** 0.5
    pairs = zip(self.altup_out, streams[1:], strict=True)
    back = [rms_matched(project(s), target) for project, s in pairs]
    return torch.stack([streams[0], *back]).mean(dim=0)
'''

BLOCK_START = """
predictions = self.altup.predict(streams)
{x} = predictions[self.altup.active]  # the layer runs on the active stream's prediction
"""

MERGE_BEFORE_NORM = """
{h} = self.merge_streams(streams)
del streams  # not held while the head computes the logits
"""


_LAYERS_LOOP = m.For(iter=m.MatchIfTrue(lambda node: bool(m.findall(node, dotted("self.layers")))))


class AltUpStreams(Transform):
    """The residual stream becomes `altup_streams` streams (streams, batch, seq, dim):
    `Model.expand_streams` adds projections of the embedding rescaled to its RMS before the
    layers, `Model.merge_streams` averages the first stream and the others projected back
    (rescaled to the first's RMS) before the final norm. Each block's `AltUp` predicts every
    stream from the active one (`altup_active`), runs the block's sublayers on that
    prediction and returns the predictions corrected by the block's output. `altup` is the
    analysed `block.altup`: the HF config fields, the layer's module and its parameters and
    the backbone's projection lists, which the adapter maps."""

    name = "altup"

    def apply(self, package, features=None, *, altup: dict) -> None:
        edits.add_args_field(package, FIELDS)
        edits.add_hf_kwarg(package, f"altup_streams=hf_config.{altup['streams']}")
        edits.add_hf_kwarg(package, f"altup_active=hf_config.{altup['active']}")
        edits.add_hf_kwarg(package, f"altup_coef_clip=hf_config.{altup['clip']}")
        norm = _resized(_block_norm(package), "args.dim")
        edits.insert_definition(
            package, "model.py", ALTUP.replace("{norm}", norm), before="TransformerBlock"
        )
        edits.insert_definition(package, "model.py", RMS_MATCHED, before="TransformerBlock")
        edits.append_to_method(
            package, "model.py", "TransformerBlock", "__init__", "self.altup = AltUp(args)\n"
        )
        _block_on_streams(package)
        run(
            package,
            "model.py",
            InsertStatements("Model", "__init__", assigns("self.norm"), MODEL_INIT),
        )
        edits.add_method_after_init(package, "Model", MERGE)
        edits.add_method_after_init(package, "Model", EXPAND)
        _model_on_streams(package)
        _map_keys(package, features, altup)


def _block_on_streams(package) -> None:
    """TransformerBlock.forward takes the streams: its first parameter is renamed, the
    prediction and the active stream come first and the return is the correction."""
    names = edits.param_names(package, "TransformerBlock", "forward")
    if not names:
        raise EditError("TransformerBlock.forward takes no hidden state")
    x = next(name for name in names if name != "self")
    edits._rename_param(package, "TransformerBlock", x, "streams: torch.Tensor")
    run(
        package,
        "model.py",
        InsertStatements(
            "TransformerBlock",
            "forward",
            lambda statement: not edits._is_docstring(statement),
            BLOCK_START.format(x=x),
            before=True,
        ),
    )
    forward = edits.find_method(package.module("model.py"), "TransformerBlock", "forward")
    returns = [s for s in forward.body.body if _returns_value(s)]
    if len(returns) != 1:
        raise EditError("TransformerBlock.forward has no single return")
    value = code_of(returns[0].body[0].value)
    run(
        package,
        "model.py",
        ReplaceStatements(
            "TransformerBlock",
            "forward",
            _returns_value,
            f"return self.altup.correct(predictions, {value})\n",
        ),
    )


def _returns_value(statement) -> bool:
    return m.matches(statement, m.SimpleStatementLine(body=[m.Return(value=m.DoesNotMatch(None))]))


class _Streams(edits.InMethod):
    """Model.forward: `streams = self.expand_streams(h)` before the layers' loop, the loop
    carrying `streams`, and the streams merged back into `h` before the final norm, then
    deleted: the last layer's streams are not held while the head computes the logits."""

    def __init__(self):
        super().__init__("Model", "forward")
        self.stream: str | None = None

    def leave_IndentedBlock(self, original, updated):
        if not self.inside:
            return updated
        body = list(updated.body)
        for index, statement in enumerate(body):
            if m.matches(statement, _LAYERS_LOOP) and self.stream is None:
                self.stream = _loop_stream(statement)
                self.hits += 1
                loop = statement.visit(_Rename(self.stream, "streams"))
                expand = statements(f"streams = self.expand_streams({self.stream})")
                after = body[index + 1 :]
                norm = next((i for i, s in enumerate(after) if _calls_final_norm(s)), None)
                if norm is None or not _norms(after[norm], self.stream):
                    raise EditError("Model.forward: no final norm of the hidden state alone")
                merge = statements(MERGE_BEFORE_NORM.format(h=self.stream))
                after[norm:norm] = merge
                return updated.with_changes(body=[*body[:index], *expand, loop, *after])
        return updated


def _calls_final_norm(statement) -> bool:
    return bool(m.findall(statement, m.Call(func=dotted("self.norm"))))


def _norms(statement, stream: str) -> bool:
    """Every final-norm call of `statement` takes the hidden state `stream` alone."""
    calls = m.findall(statement, m.Call(func=dotted("self.norm")))
    return all(len(c.args) == 1 and m.matches(c.args[0].value, m.Name(stream)) for c in calls)


def _model_on_streams(package) -> None:
    transformer = _Streams()
    run(package, "model.py", transformer)
    if transformer.stream is None:
        raise EditError("Model.forward has no `for layer in self.layers` loop")


class _Rename(cst.CSTTransformer):
    """Every read and write of the local `old` becomes `new` (attribute names left alone)."""

    def __init__(self, old: str, new: str):
        super().__init__()
        self.old, self.new = old, new

    def leave_Attribute(self, original, updated):
        return updated.with_changes(attr=original.attr)

    def leave_Name(self, original, updated):
        return updated.with_changes(value=self.new) if updated.value == self.old else updated


def _loop_stream(loop: cst.For) -> str:
    """The local the layers' loop carries (`h = layer(h, ...)`)."""
    for statement in loop.body.body:
        if isinstance(statement, cst.SimpleStatementLine):
            small = statement.body[0]
            if isinstance(small, cst.Assign) and isinstance(small.targets[0].target, cst.Name):
                return small.targets[0].target.value
    raise EditError("Model.forward: the layers' loop assigns no hidden state")


def module_keys(params: dict) -> dict[str, str]:
    """HF's key -> the AltUp module's, within the module (`params`: the fact's names)."""
    return {
        params["output_scale"]: "output_scale",
        f"{params['correction']}.weight": "correction.weight",
        f"{params['prediction']}.weight": "prediction.weight",
        f"{params['router']}.weight": "router.weight",
        f"{params['router_norm']}.weight": "router_norm.weight",
    }


def _map_keys(package, features, altup: dict) -> None:
    prefix = features.state_dict.prefix if features is not None else "model.layers"
    module = f"{prefix}.{{}}.{altup['module']}"
    layer_rows = [
        (f"{module}.{hf}", f"layers.{{}}.altup.{house}")
        for hf, house in module_keys(altup["params"]).items()
    ]
    model_rows = [
        (f"{altup['embed']}.{{}}.weight", "altup_in.{}.weight"),
        (f"{altup['unembed']}.{{}}.weight", "altup_out.{}.weight"),
    ]
    edits.insert_after_layer_rows(package, layer_rows)
    edits.insert_rows_after(package, "norm.weight", model_rows)
