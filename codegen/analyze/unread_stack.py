"""The category of a model whose layers the layer reader did not find, from its structure.

"No decoder stack found" would drop a decoder from the coverage sweep's denominator. Before
saying so, this looks for what the model does have:

* a drafter: the entry's forward never reads its token ids and refuses to run without
  input embeddings (and other states) handed over by a host model: other;
* a repeated block list mixing tokens (a module list whose first item holds, a few modules
  deep, a softmax attention or another token mixer), or module lists of attentions run in
  parallel with lists of feed-forwards (one entry per layer in each):
  - blocks carrying two streams (one sublayer run on two different inputs: XLNet's content
    and query streams): a two-stream permutation LM, other;
  - a causal mask (`causal_mask`): decoder, with every capability the layer reader lacks
    named as unsupported (`unread_capabilities`), so the sweep lists it as remaining;
  - a mask that is triangular only under a flag that is off: encoder (bidirectional);
  - no mask found: other, saying so.
"""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m

from codegen.analyze import causal_mask, unread_capabilities
from codegen.analyze.context import Ctx
from codegen.analyze.evaluate import ModuleListRec, ModuleRec
from codegen.analyze.model import walk_tree
from codegen.analyze.roles import ATTENTION, MIXER, Signals, attention_calls, mixer_hinted
from codegen.analyze.unread_capabilities import SOFTMAX

_DEPTH = 3  # how deep in a block a token mixer is looked for


def classify(ctx: Ctx) -> str:
    where = ctx.model.entry_cls.cite()
    drafter = _host_inputs(ctx)
    if drafter:
        ctx.cite(
            "category",
            f"{where} (drafter: reads no token ids, runs on {', '.join(drafter)} handed over"
            " by a host model)",
        )
        return "other"
    stack = find_blocks(ctx)
    if stack is None:
        if "decoder_input_ids" in forward_params(ctx):
            ctx.cite("category", f"{where} (encoder-decoder: decoder_input_ids, no stack read)")
        else:
            ctx.cite("category", f"{where} (no decoder stack found)")
        return "other"
    path, block, parallel = stack
    site = ctx.class_site(block) or where
    recurrence = _recurrence_only(ctx, block)
    if recurrence is not None:
        ctx.cite(
            "category",
            f"{ctx.class_site(recurrence) or site} (token mixers at {path}: recurrence"
            f" ({recurrence.cls.name}), no softmax attention)",
        )
        return "hybrid"
    streams = None if parallel else _two_streams(ctx, block)
    if streams:
        ctx.cite(
            "category",
            f"{site} (two-stream layers at {path}: {streams}; a permutation LM, not a causal"
            " decoder)",
        )
        return "other"
    causal, mask_at, flag = causal_mask.read(ctx)
    form = f"attention lists run in parallel at {path}" if parallel else f"blocks at {path}"
    if causal is False:
        ctx.cite(
            "category",
            f"{mask_at} (bidirectional {form}: the causal mask is built only when {flag},"
            " off here)",
        )
        return "encoder"
    if causal is None:
        why = f"its mask depends on {flag}, not read" if flag else "no causal mask found"
        ctx.cite("category", f"{site} (attention {form}; {why})")
        return "other"
    ctx.cite("category", f"{mask_at} (causal attention {form}, not read as decoder layers)")
    unread_capabilities.report(ctx, path, block, parallel)
    return "decoder"


def find_blocks(ctx: Ctx) -> tuple[str, ModuleRec, bool] | None:
    """(path, first block, parallel lists?) of the longest module list whose items mix tokens."""
    best = None
    for path, rec in walk_tree(ctx.model.entry):
        if not isinstance(rec, ModuleListRec):
            continue
        items = [item for item in rec.items if isinstance(item, ModuleRec)]
        if not items or not mixes_tokens(ctx, items[0], _DEPTH):
            continue
        parallel = mixes_tokens(ctx, items[0], 0)  # the list's items are the attentions
        key = (len(items), not parallel)
        if best is None or key > best[0]:
            best = (key, path, items[0], parallel)
    return None if best is None else best[1:]


def mixes_tokens(ctx: Ctx, rec: ModuleRec, depth: int) -> bool:
    """`rec`, or a module up to `depth` below it, is a softmax attention or token mixer."""
    if _attention(ctx, rec) or _recurrence(ctx, rec):
        return True
    if depth <= 0:
        return False
    return any(
        isinstance(child, ModuleRec) and mixes_tokens(ctx, child, depth - 1)
        for _, child in rec.children()
    )


def _attention(ctx: Ctx, rec: ModuleRec) -> bool:
    roles = ctx.model.roles
    if roles.role(rec) == ATTENTION:
        return True
    if rec.cls is None:
        return False
    sig = roles.method_signals(rec.cls)
    softmax = bool(SOFTMAX & sig.ops)
    products = sig.matmul or bool(sig.ops & {"matmul", "bmm", "baddbmm", "einsum"})
    if (softmax and products) or attention_calls(sig.ops):
        return any(not isinstance(v, ModuleListRec) for _, v in rec.children())
    return False


def _recurrence(ctx: Ctx, rec: ModuleRec) -> bool:
    """A token mixer that is no softmax attention: the MIXER role, or a module with no
    parameters of its own calling a recurrence kernel (xLSTM's backend of its mLSTM layer)."""
    roles = ctx.model.roles
    if roles.role(rec) == MIXER:
        return True
    if rec.cls is None or _attention(ctx, rec):
        return False
    # the kernel called, or kept by `__init__` to be called (`self.kernel_fn = mlstm_...`)
    kept = Signals(ops=_kept_functions(ctx, rec))
    return mixer_hinted(roles.method_signals(rec.cls)) or mixer_hinted(kept)


def _kept_functions(ctx: Ctx, rec: ModuleRec) -> set[str]:
    """Module-level functions `__init__` stores on the module (`self.x = some_function`)."""
    project = ctx.model.project
    found = project.find_method(rec.cls, "__init__")
    if found is None:
        return set()
    owner, fn = found
    kept = set()
    target = m.AssignTarget(m.Attribute(value=m.Name("self")))
    for node in m.findall(fn.body, m.Assign(targets=[target], value=m.Name())):
        if project.resolve_name(owner.sf, node.value.value)[0] == "function":
            kept.add(node.value.value)
    return kept


def _recurrence_only(ctx: Ctx, block: ModuleRec) -> ModuleRec | None:
    """The block's first recurrent mixer when nothing in it is a softmax attention."""
    found = [rec for _, rec in walk_tree(block) if isinstance(rec, ModuleRec)]
    if any(_attention(ctx, rec) for rec in found):
        return None
    return next((rec for rec in found if _recurrence(ctx, rec)), None)


def forward_params(ctx: Ctx) -> set[str]:
    """The names the entry class's forward takes (what its category is read from)."""
    found = ctx.model.project.find_method(ctx.model.entry_cls, "forward")
    if found is None:
        return set()
    params = found[1].params
    return {p.name.value for p in list(params.params) + list(params.kwonly_params)}


def _host_inputs(ctx: Ctx) -> list[str]:
    """The inputs the entry's forward requires (raises when None) while never reading its
    token ids: what a drafter takes from the model it drafts for; [] for anything else."""
    found = ctx.model.project.find_method(ctx.model.entry_cls, "forward")
    if found is None:
        return []
    fn = found[1]
    params = [p.name.value for p in list(fn.params.params) + list(fn.params.kwonly_params)]
    if not params or "input_ids" not in params or _reads(fn.body, "input_ids"):
        return []
    required: list[str] = []
    for node in m.findall(fn.body, m.If(body=m.IndentedBlock(body=[m.SimpleStatementLine()]))):
        raises = m.findall(node.body, m.Raise())
        if not raises:
            continue
        for test in m.findall(node.test, m.Comparison()):
            target = test.comparisons[0]
            if (
                isinstance(test.left, cst.Name)
                and test.left.value in params
                and m.matches(target, m.ComparisonTarget(m.Is(), m.Name("None")))
            ):
                required.append(test.left.value)
    return required if "inputs_embeds" in required else []


def _reads(body: cst.CSTNode, name: str) -> bool:
    """`name` is read in `body` (a keyword of a call named alike is no read)."""
    keywords = {id(arg.keyword) for arg in m.findall(body, m.Arg(keyword=m.Name()))}
    return any(id(node) not in keywords for node in m.findall(body, m.Name(name)))


def _two_streams(ctx: Ctx, block: ModuleRec) -> str | None:
    """'<sublayer> on a and b' when the block's forward runs one of its own sublayers (or a
    method) on two different inputs and returns both."""
    if block.cls is None:
        return None
    found = ctx.model.project.find_method(block.cls, "forward")
    if found is None:
        return None
    fn = found[1]
    own = {name for name, _ in block.children()} | set(block.cls.methods)
    inputs: dict[str, set[str]] = {}
    for call in m.findall(fn.body, m.Call()):
        positional = [a.value for a in call.args if a.keyword is None]
        if _own(call.func, own):  # self.ff(x): its first input
            attr, stream = call.func.attr.value, positional[:1]
        else:  # chunked(self.ff_chunk, ..., x): a callable handed over with its input last
            handed = [v for v in positional if _own(v, own)]
            if not handed:
                continue
            attr, stream = handed[0].attr.value, positional[-1:]
        if stream and isinstance(stream[0], cst.Name):
            inputs.setdefault(attr, set()).add(stream[0].value)
    for attr, names in inputs.items():
        if len(names) >= 2:
            return f"self.{attr} run on {' and '.join(sorted(names))}"
    return None


def _own(node: cst.BaseExpression, own: set[str]) -> bool:
    return m.matches(node, m.Attribute(value=m.Name("self"))) and node.attr.value in own
