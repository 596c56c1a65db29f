"""AltUp (alternating updates): the residual stream kept as several streams, of which each
layer runs on one and corrects the others from its output.

Read from the code's structure, never from names. A module of the layer defines three
methods whose bodies (comments, docstrings and local names aside; its `self.` attributes
and the config fields it reads compared by position) are `ROUTER`, `PREDICT` and `CORRECT`:

* the router: `tanh(router(norm(x) * scale))` in fp32 (the scale a buffer of `1 / hidden`);
* predict: each stream plus a per-token mix of all the streams, the mix's `n x n`
  coefficients projected from the router's reading of the active stream (`config.<active>`);
* correct: each prediction plus the layer output's innovation over the active prediction,
  weighted per stream by `1 + coefficients` of the router's reading of that output; the
  coefficient weights clipped to `config.<clip>` while training (and the prediction's in
  place, as HF's).

The layer's forward calls predict on its input, runs its sublayers on the prediction at the
active index and returns correct's result; the backbone builds the other streams before the
layers (`STREAMS_IN`: a projection of the embedding each, rescaled to the embedding's RMS)
and joins them after (`STREAMS_OUT`: each stream but the first projected back, rescaled to
the first's RMS, and the mean over the streams), with two ModuleLists of square bias-free
Linears, `config.<streams> - 1` each.

The fact (`block.altup`) is a dict: `module` (the layer attribute), `streams`, `active` and
`clip` (config fields), `params` (HF's names of the module's parameters: the output scale,
the correction, prediction and router weights and the router norm's), `embed` and
`unembed` (the backbone's ModuleLists, prefixed as the checkpoint keys are).
"""

from __future__ import annotations

import ast
import copy

from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleListRec, ModuleRec, ParamRec

# HF's methods (gemma3n's Gemma3nTextAltUp) without comments and docstrings; local names,
# `self.` attributes and `self.config.` fields compare by position
ROUTER = """
def f(self, x):
    router_inputs = self.router_norm(x) * self.router_input_scale
    routed = self.modality_router(router_inputs)
    return torch.tanh(routed.float()).type_as(x)
"""

PREDICT = """
def f(self, hidden_states):
    modalities = self.compute_router_modalities(hidden_states[self.config.altup_active_idx])
    if self.training and self.config.altup_coef_clip is not None:
        self.prediction_coefs.weight.data.clamp_(
            -self.config.altup_coef_clip, self.config.altup_coef_clip
        )
    all_coefs: torch.Tensor = (
        self.prediction_coefs(modalities)
        .reshape(
            *modalities.shape[:-1], self.config.altup_num_inputs, self.config.altup_num_inputs
        )
        .permute(0, 1, 3, 2)
    )
    predictions = torch.matmul(hidden_states.permute(1, 2, 3, 0), all_coefs)
    predictions = predictions.permute(3, 0, 1, 2)
    predictions += hidden_states
    return predictions.contiguous().type_as(hidden_states)
"""

CORRECT = """
def f(self, predictions, activated):
    modalities = self.compute_router_modalities(activated)
    innovation = activated - predictions[self.config.altup_active_idx]
    innovation = innovation.repeat(self.config.altup_num_inputs, 1, 1, 1)
    if self.training and self.config.altup_coef_clip is not None:
        weight = self.correction_coefs.weight.clamp(
            -self.config.altup_coef_clip, self.config.altup_coef_clip
        )
        all_coefs = torch.nn.functional.linear(modalities, weight, bias=None) + 1.0
    else:
        all_coefs = self.correction_coefs(modalities) + 1.0
    all_coefs = all_coefs.permute(2, 0, 1).unsqueeze(-1)
    corrected = torch.mul(innovation, all_coefs)
    corrected += predictions
    return corrected.contiguous().type_as(activated)
"""

# the backbone's loops building the streams (after `target = rms(embedding)`) and joining
# them (after `target = rms(streams[0])`); compared as the methods above
STREAMS_IN = """
def f(self, x):
    target_magnitude = torch.mean(x ** 2, dim=-1, keepdim=True) ** 0.5
    temp_hidden_states = [x]
    for i in range(1, self.config.altup_num_inputs):
        altup_proj = self.altup_projections[i - 1](x)
        current_hidden_state = altup_proj.to(dtype=x.dtype, device=target_magnitude.device)
        new_magnitude = torch.mean(current_hidden_state ** 2, dim=-1, keepdim=True)
        new_magnitude = torch.sqrt(new_magnitude.clamp(min=1e-05))
        current_hidden_state = current_hidden_state * target_magnitude / new_magnitude
        temp_hidden_states.append(current_hidden_state)
"""

STREAMS_OUT = """
def f(self, x, first):
    target_magnitude = torch.mean(x[0] ** 2, dim=-1, keepdim=True) ** 0.5
    temp_hidden_states = [x[0]]
    for i in range(1, self.config.altup_num_inputs):
        altup_unemb_proj: torch.Tensor = self.altup_unembed_projections[i - 1](x[i])
        current_hidden_state = altup_unemb_proj.to(
            dtype=first.dtype, device=target_magnitude.device
        )
        new_magnitude = torch.mean(current_hidden_state ** 2, dim=-1, keepdim=True)
        new_magnitude = torch.sqrt(new_magnitude.clamp(min=1e-05))
        current_hidden_state = current_hidden_state * target_magnitude / new_magnitude
        temp_hidden_states.append(current_hidden_state)
    x = torch.stack(temp_hidden_states)
    x = torch.mean(x, dim=0)
"""


def detect(ctx: Ctx) -> dict | None:
    """The AltUp fact of the model's first layer (see the module docstring), or None."""
    layers = [rec for rec in ctx.model.layers or () if isinstance(rec, ModuleRec)]
    owner = ctx.model.stack_owner
    if not layers or layers[0].cls is None or owner is None or owner.cls is None:
        return None
    for name, child in layers[0].attrs.items():
        if not isinstance(child, ModuleRec) or child.cls is None:
            continue
        found = _module(child)
        if found is None or not _layer_calls(layers[0], name, found):
            continue
        outer = _backbone(ctx, owner, found["streams"])
        if outer is None:
            return None
        ctx.cite("block.altup", f"{ctx.class_site(child)} (layer attribute {name!r})")
        prefix = ctx.model.stack_owner_path + "." if ctx.model.stack_owner_path else ""
        return {
            "module": name,
            **{key: found[key] for key in ("streams", "active", "clip", "params")},
            **{key: prefix + path for key, path in outer.items()},
        }
    return None


def _module(rec: ModuleRec) -> dict | None:
    """The fields and parameter names of a module whose methods are ROUTER, PREDICT and
    CORRECT (calling one another as HF's do), else None."""
    methods = {n: _parse(rec.cls.sf.code(fn)) for n, fn in rec.cls.methods.items()}
    forms = {}
    for key, text in (("router", ROUTER), ("predict", PREDICT), ("correct", CORRECT)):
        expected = normalised(_parse(text))[0]
        hits = [
            (n, normalised(fn)) for n, fn in methods.items() if fn is not None and n != "__init__"
        ]
        hits = [(n, form) for n, form in hits if form[0] == expected]
        if len(hits) != 1:
            return None
        forms[key] = hits[0]
    router_name, (_, router_attrs, _) = forms["router"]
    predict_name, (_, predict_attrs, predict_fields) = forms["predict"]
    _, (_, correct_attrs, correct_fields) = forms["correct"]
    # both call the router method by its name; the fields agree between them
    if predict_attrs[0] != router_name or correct_attrs[0] != router_name:
        return None
    active, clip, streams = predict_fields
    if correct_fields != (active, streams, clip):
        return None
    norm, scale, router = router_attrs
    _, _, prediction = predict_attrs[:3]
    correction = correct_attrs[2]
    # the output scale: the one parameter of the module besides its Linears and norm
    scales = [n for n, v in rec.attrs.items() if isinstance(v, ParamRec) and n != scale]
    if len(scales) != 1 or not _scale_of(rec, scale):
        return None
    return {
        "streams": streams,
        "active": active,
        "clip": clip,
        "predict": predict_name,
        "params": {
            "output_scale": scales[0],
            "correction": correction,
            "prediction": prediction,
            "router": router,
            "router_norm": norm,
        },
    }


def _scale_of(rec: ModuleRec, attr: str) -> bool:
    """`self.<attr>` is a buffer holding `1 / hidden`: `torch.tensor(config.<hidden> ** -1.0)`."""
    init = _parse(rec.cls.sf.code(rec.cls.methods["__init__"]))
    for node in ast.walk(init) if init is not None else ():
        if (
            isinstance(node, ast.Assign)
            and isinstance(node.targets[0], ast.Attribute)
            and node.targets[0].attr == attr
        ):
            text = ast.unparse(node.value)
            return text.startswith("nn.Buffer(torch.tensor(") and text.endswith(
                "** (-1.0)), persistent=False)"
            )
    return False


def _layer_calls(layer: ModuleRec, name: str, found: dict) -> bool:
    """The layer's forward predicts from its input and runs on `predictions[config.<active>]`."""
    forward = _parse(layer.cls.sf.code(layer.cls.methods["forward"]))
    if forward is None:
        return False
    text = ast.unparse(forward)
    return f"self.{name}.{found['predict']}(" in text and f"[self.config.{found['active']}]" in text


def _backbone(ctx: Ctx, owner: ModuleRec, streams: str) -> dict | None:
    """{"embed", "unembed"}: the backbone's ModuleLists of the STREAMS_IN / STREAMS_OUT
    loops, over `config.<streams>` as the layer's module, each of square Linears."""
    forward = _parse(owner.cls.sf.code(owner.cls.methods["forward"]))
    if forward is None:
        return None
    found = {}
    for key, text in (("embed", STREAMS_IN), ("unembed", STREAMS_OUT)):
        expected, _, fields = normalised(_parse(text))
        size = len(_parse(text).body)
        hit = None
        for block in _blocks(forward.body):
            for start in range(len(block) - size + 1):
                window = block[start : start + size]
                form = normalised(_as_method(window, text))
                if form[0] == expected:
                    hit = form
        if hit is None or hit[2] != (streams,):
            return None
        (listed,) = hit[1]
        rec = owner.attrs.get(listed)
        if not isinstance(rec, ModuleListRec) or not all(
            isinstance(item, ModuleRec) and item.kind == "Linear" for item in rec.items
        ):
            return None
        found[key] = listed
    return found


def _blocks(body: list) -> list[list]:
    """Every statement list in a function body, nested ones included."""
    out = [body]
    for statement in body:
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(statement, field, None)
            if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                out += _blocks(inner)
    return out


def _as_method(statements: list, like: str) -> ast.FunctionDef:
    """The statements as the body of a method with the parameters of `like`'s: the names
    the window reads before it assigns them, in order."""
    args = _parse(like).args.args
    assigned: set[str] = set()
    read: list[str] = []

    class _Reads(ast.NodeVisitor):
        """Names in execution order: an assignment's value before its targets."""

        def visit_Assign(self, node):
            self.visit(node.value)
            for target in node.targets:
                self.visit(target)

        def visit_AnnAssign(self, node):
            self.visit(node.value)
            self.visit(node.target)

        visit_AugAssign = visit_AnnAssign

        def visit_For(self, node):
            self.visit(node.iter)
            self.visit(node.target)
            for statement in node.body:
                self.visit(statement)

        def visit_Name(self, node):
            if isinstance(node.ctx, ast.Store):
                assigned.add(node.id)
            elif node.id not in assigned and node.id not in read:
                if node.id not in ("torch", "self", "range"):
                    read.append(node.id)

    for statement in statements:
        _Reads().visit(statement)
    names = ["self", *read[: len(args) - 1]]
    return ast.FunctionDef(
        name="f",
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg(n) for n in names],
            kwonlyargs=[],
            kw_defaults=[],
            defaults=[],
        ),
        body=statements,
        decorator_list=[],
        returns=None,
        type_params=[],
        lineno=0,
    )


def _parse(code: str) -> ast.FunctionDef | None:
    try:
        node = ast.parse(code.strip()).body[0]
    except SyntaxError:
        return None
    return node if isinstance(node, ast.FunctionDef) else None


def normalised(method: ast.FunctionDef) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The method's body with parameters and locals renamed by first appearance, its `self.`
    attributes and `self.config.` fields likewise (their names returned in order), without
    docstrings and annotations."""
    names: dict[str, str] = {}
    attrs: dict[str, str] = {}
    fields: dict[str, str] = {}
    body = [
        s
        for s in method.body
        if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
    ]
    for arg in method.args.args[1:]:
        names.setdefault(arg.arg, f"v{len(names)}")

    class _Rename(ast.NodeTransformer):
        def visit_AnnAssign(self, node):
            assign = ast.Assign(targets=[node.target], value=node.value, lineno=0)
            return self.visit(assign)

        def visit_Attribute(self, node):
            value = node.value
            if (
                isinstance(value, ast.Attribute)
                and isinstance(value.value, ast.Name)
                and value.value.id == "self"
                and value.attr == "config"
            ):
                return ast.Name(fields.setdefault(node.attr, f"c{len(fields)}"), node.ctx)
            if isinstance(value, ast.Name) and value.id == "self":
                return ast.Name(attrs.setdefault(node.attr, f"s{len(attrs)}"), node.ctx)
            return self.generic_visit(node)

        def visit_Name(self, node):
            if node.id in ("torch", "nn", "F", "range"):
                return node
            return ast.Name(names.setdefault(node.id, f"v{len(names)}"), node.ctx)

    text = "\n".join(ast.unparse(_Rename().visit(copy.deepcopy(s))) for s in body)
    return text, tuple(attrs), tuple(fields)
