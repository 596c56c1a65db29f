"""Token embedding and output head: tying, embedding scale, logit soft-capping and scaling.

* tied: the head class declares `_tied_weights_keys` and the config's `tie_word_embeddings` is
  true (transformers ties only then), or the logits are computed from the embedding weight;
* embedding scale: the embedding module's own forward multiplies its output, or the backbone
  multiplies the embeddings before the first layer;
* embedding norm: the backbone passes the embeddings through a norm module before the first
  layer (nanochat's weightless RMSNorm, the same module as the final norm);
* logit softcap: `tanh` applied to the logits in the head's forward (as configured);
* logit scale: the logits (or the hidden states going into the head) multiplied or divided
  by a value (other than the softcap pair);
* absolute positions: a second embedding table of the decoder stack sized by the config's
  `max_position_embeddings` (plus a constant offset: OPT's table starts its positions at 2)
  is a learned position table; a sinusoidal table computed with sin and cos in the modeling
  file where no rotary embedding is applied is `sinusoidal` (tensor2tensor's) or
  `sinusoidal_pow` (10000^(2k/d), CTRL's);
* padding row: the config field the word table's `padding_idx` reads (`word_padding.py`);
* a head that is not an nn.Linear (its own class applying one 2-D weight) is the head too;
  one that normalises its weight rows is reported unsupported.
"""

from __future__ import annotations

import dataclasses

from codegen.analyze import vocab_crop
from codegen.analyze.config import attr
from codegen.analyze.context import Ctx
from codegen.analyze.dataflow import Term, primary_input, walk
from codegen.analyze.detect_ffn import applied_activations
from codegen.analyze.evaluate import ActRec, ModuleRec, ParamRec, Unknown
from codegen.analyze.features import UNKNOWN, Embedding, Head
from codegen.analyze.init_std import embedding_init_std
from codegen.analyze.model import linear_bias, walk_tree
from codegen.analyze.padded_positions import detect as position_padding
from codegen.analyze.roles import CONTAINER, EMBEDDING, LAYER, LINEAR, MLP, NORM, OTHER
from codegen.analyze.size_fields import rows_field
from codegen.analyze.walk import findall
from codegen.analyze.word_padding import detect as word_padding
from codegen.analyze.word_rows import detect as word_rows


def _embedding(ctx: Ctx) -> tuple[str | None, ModuleRec | None]:
    owner = ctx.model.stack_owner
    if owner is None:
        return None, None
    # the stack's owner, else the modules above it (HRM's stacks are modules of the backbone)
    path = ctx.model.stack_owner_path.split(".") if ctx.model.stack_owner_path else []
    owners = [owner] + [_at(ctx.model.entry, path[:i]) for i in range(len(path) - 1, -1, -1)]
    for holder in owners:
        for name, child in holder.children() if isinstance(holder, ModuleRec) else ():
            if (
                isinstance(child, ModuleRec)
                and ctx.roles.role(child) == EMBEDDING
                and not any(child is t for t in ctx.rope_tables)  # sin/cos rows of the rotation
            ):
                return name, child
    return None, None


def _at(rec, path: list[str]):
    for name in path:
        rec = rec.attrs.get(name) if isinstance(rec, ModuleRec) else None
    return rec


def _head(ctx: Ctx) -> tuple[str | None, ModuleRec | None]:
    entry = ctx.model.entry
    owner_root = ctx.model.stack_owner_path.split(".")[0] if ctx.model.stack_owner_path else None
    for name, child in entry.children():
        if name == owner_root:
            continue
        if isinstance(child, ModuleRec) and ctx.roles.role(child) == LINEAR:
            return name, child
    for name, child in entry.children():
        if name != owner_root and isinstance(child, ModuleRec) and _custom_head(ctx, child):
            return name, child
    return None, None


def _custom_head(ctx: Ctx, rec: ModuleRec) -> bool:
    """A module of its own class that owns one 2-D weight and applies it as a projection
    (`F.linear(h, w)`, `h @ w.T`): an output head that is not a plain nn.Linear."""
    if rec.cls is None or ctx.roles.role(rec) not in (OTHER, CONTAINER):
        return False
    weights = [v for v in rec.attrs.values() if isinstance(v, ParamRec) and v.kind == "parameter"]
    if len(weights) != 1 or len(weights[0].shape) != 2:
        return False
    sig = ctx.roles.method_signals(rec.cls)
    return bool(sig.matmul or sig.ops & {"linear", "matmul", "mm"})


def _normalised_head(ctx: Ctx, rec: ModuleRec) -> bool:
    """The head's weight rows are normalised in its forward (`F.normalize(self.weight)`)."""
    if rec.cls is None:
        return False
    return bool(ctx.roles.method_signals(rec.cls).ops & {"normalize", "norm"})


def _before_head(term: Term):
    """The terms computed on the head's input in the head owner's forward (its backbone and
    other module calls are not entered)."""
    seen: set[int] = set()
    stack = [a for a in term.args if isinstance(a, Term)]
    while stack:
        t = stack.pop()
        if id(t) in seen or t.op in ("call", "input"):
            continue
        seen.add(id(t))
        yield t
        stack.extend(a for a in t.args if isinstance(a, Term))


def _holder(entry, rec):
    """The module record holding `rec` as an attribute of its own (searched from `entry`)."""
    stack, seen = [entry], set()
    while stack:
        node = stack.pop()
        if not isinstance(node, ModuleRec) or id(node) in seen:
            continue
        seen.add(id(node))
        if any(child is rec for child in node.attrs.values()):
            return node
        stack.extend(child for _, child in node.children())
    return None


def _scale_factor(term: Term):
    """The non-tensor factor of a `mul`/`div` term, if any. A factor written as a literal `1`
    is no scale; a configured factor counts whatever its value (see features.py)."""
    factor = None
    for a in term.args:
        if not isinstance(a, Term):
            factor = a
            break
        if a.op == "param":
            factor = a.module
            break
    if isinstance(factor, int | float) and not isinstance(factor, bool) and factor == 1:
        if term.site is not None and not _literal_operand(term.site.node):
            return _Configured(factor)
        return None
    return factor


def _learned_affine(ctx: Ctx, owner: ModuleRec, term: Term, factor: ParamRec) -> dict | None:
    """The embeddings times a learned per-channel parameter of the backbone after adding
    another (zaya's `(x + bias) * scale`): {"scale", "bias"} as checkpoint keys ("bias" ""
    when nothing is added first). Any other learned factor is named unsupported."""
    names = {id(v): k for k, v in owner.attrs.items()}
    shifts = [
        x.module
        for a in term.args
        if isinstance(a, Term) and a.op == "add"
        for x in a.args
        if isinstance(x, Term) and x.op == "param" and id(x.module) in names
    ]
    prefix = f"{ctx.model.stack_owner_path}." if ctx.model.stack_owner_path else ""
    vectors = [factor, *shifts]
    if (
        term.op == "mul"
        and len(shifts) <= 1
        and id(factor) in names
        and all(isinstance(p, ParamRec) and p.kind == "parameter" for p in vectors)
        and all(len(p.shape) == 1 and p.shape == factor.shape for p in vectors)
    ):
        return {
            "scale": prefix + names[id(factor)],
            "bias": prefix + names[id(shifts[0])] if shifts else "",
        }
    ctx.unsupported(
        "embedding.learned_scale",
        f"the embeddings are multiplied by a learned parameter ({names.get(id(factor), '?')},"
        f" shape {tuple(factor.shape)})"
        + (f" after adding another ({', '.join(names[id(x)] for x in shifts)})" if shifts else "")
        + " before the first layer, not as (x + bias) * scale per channel: no rule yet",
        _where(term, ctx.class_site(owner)),
    )
    return None


class _Configured(float):
    """A configured multiplier whose current value happens to be 1."""


def _literal_operand(node) -> bool:
    import libcst as cst

    if isinstance(node, cst.BinaryOperation):
        return isinstance(node.left, cst.Integer | cst.Float) or isinstance(
            node.right, cst.Integer | cst.Float
        )
    if isinstance(node, cst.AugAssign):
        return isinstance(node.value, cst.Integer | cst.Float)
    return True


def _where(term: Term, fallback: str | None) -> str | None:
    return term.site.cite() if term.site is not None else fallback


def _describe(value) -> str:
    if isinstance(value, ParamRec) and value.value is not None:
        value = value.value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.6g}"
    return "configured value"


def _chain(ctx: Ctx) -> list[tuple[str, ModuleRec]]:
    """(path, module) from the entry's child down to the stack's owner (BERT's `bert`,
    `bert.encoder`)."""
    model = ctx.model
    chain, node, path = [], model.entry, []
    for part in model.stack_owner_path.split(".") if model.stack_owner_path else ():
        node = node.attrs.get(part) if isinstance(node, ModuleRec) else None
        path.append(part)
        if isinstance(node, ModuleRec):
            chain.append((".".join(path), node))
    return chain


def _embeddings_module(ctx: Ctx) -> tuple[str, ModuleRec] | None:
    """The module of its own the backbone keeps its tables in (BERT's `bert.embeddings`)."""
    chain = _chain(ctx)
    on_chain = [rec for _, rec in chain]
    for path, owner in chain:
        for name, child in owner.children():
            if (
                isinstance(child, ModuleRec)
                and child.cls is not None
                and child not in on_chain
                and _holds(ctx, child, EMBEDDING)
            ):
                return f"{path}.{name}", child
    return None


def _module_tables(ctx: Ctx, path: str, rec: ModuleRec) -> dict | None:
    """The tables of an embeddings module: the word table (vocab_size rows), a learned
    position table (max_position_embeddings rows, plus a constant offset), at most one more
    table (the token types, indexed by zeros in a causal LM) and at most one norm (applied
    to their sum). None when it holds anything else with weights."""
    cfg = ctx.model.config
    vocab, rows = attr(cfg, "vocab_size"), attr(cfg, "max_position_embeddings")
    found: dict = {"word": "", "positions": "", "offset": 0, "token_type": "", "norm": ""}
    side = _side_tables(ctx, path, rec, vocab)
    found["side"] = side
    for name, child in rec.children():
        if side is not None and name in side["names"]:
            continue  # tables concatenated to the token rows, and their projection
        if not isinstance(child, ModuleRec):
            if isinstance(child, ParamRec) and child.kind == "buffer" and not child.persistent:
                continue  # position_ids: a non-persistent arange
            return None  # a parameter of the module's own
        role = ctx.roles.role(child)
        size = child.args[0] if child.args else None
        if role == EMBEDDING and size == vocab and not found["word"]:
            found["word"] = f"{path}.{name}"
        elif (
            role == EMBEDDING
            and isinstance(size, int)
            and isinstance(rows, int)
            and 0 <= size - rows <= 2
            and not found["positions"]
        ):
            found["positions"], found["offset"] = f"{path}.{name}", size - rows
        elif role == EMBEDDING and not found["token_type"]:
            found["token_type"] = f"{path}.{name}"
        elif role == NORM and not found["norm"]:
            found["norm"] = f"{path}.{name}"
        elif _has_weights(child):
            return None
    if not found["word"]:
        return None
    found["width"], found["projection"], found["projection_switched"] = "", "", False
    word = rec.attrs[found["word"].rsplit(".", 1)[-1]]
    hidden = attr(cfg, "hidden_size")
    width = word.args[1] if len(word.args) > 1 else None
    if isinstance(hidden, int) and isinstance(width, int) and width != hidden:
        # narrower tables (RemBERT's input_embedding_size) projected to the hidden size by
        # a linear layer of the backbone before the first layer
        found["width"] = _config_field(ctx, word, 1)
        found["projection"] = _projection(ctx, width, hidden)
        if not (found["width"] and found["projection"]):
            return None
        found["projection_switched"] = _built_when_widths_differ(
            ctx, found["projection"], found["width"]
        )
    return found


def _side_tables(ctx: Ctx, path: str, rec: ModuleRec, vocab) -> dict | None:
    """Tables concatenated to the token rows and mapped back (RoCBert), see side_tables.py."""
    from codegen.analyze import side_tables

    word = next(
        (
            name
            for name, child in rec.children()
            if isinstance(child, ModuleRec)
            and ctx.roles.role(child) == EMBEDDING
            and child.args[:1] == (vocab,)
        ),
        None,
    )
    return side_tables.detect(ctx, path, rec, word) if word is not None else None


def _built_when_widths_differ(ctx: Ctx, path: str, width: str) -> bool:
    """The projection at `path` is assigned only under `if config.<width> != ...hidden_size`
    (ELECTRA's embeddings_project; RemBERT builds its projection always)."""
    import libcst as cst
    import libcst.matchers as m

    owner_path, _, name = path.rpartition(".")
    owner = dict(_chain(ctx)).get(owner_path)
    site = owner.assign_sites.get(name) if owner is not None else None
    if site is None or site.method is None:
        return False
    differs = m.Comparison(
        comparisons=[m.ComparisonTarget(operator=m.NotEqual() | m.IsNot())],
    )
    for branch in findall(site.method, m.If(test=differs)):
        assert isinstance(branch, cst.If)
        fields = {
            node.attr.value
            for node in findall(branch.test, m.Attribute(value=m.Name(), attr=m.Name()))
            if isinstance(node, cst.Attribute)
        }
        inside = any(node is site.node for node in findall(branch.body, m.Assign()))
        if inside and {width, "hidden_size"} <= fields:
            return True
    return False


def _config_field(ctx: Ctx, rec: ModuleRec, index: int) -> str:
    """The config field `rec`'s constructor reads for its argument `index`
    (`nn.Embedding(config.vocab_size, config.input_embedding_size)`, 1 ->
    "input_embedding_size"), checked against the evaluated value; "" if not one field."""
    import libcst as cst
    import libcst.matchers as m

    node = rec.site.node if rec.site is not None else None
    if not isinstance(node, cst.Call) or len(node.args) <= index or len(rec.args) <= index:
        return ""
    value = node.args[index].value
    if not m.matches(value, m.Attribute(value=m.Name(), attr=m.Name())):
        return ""
    name = value.attr.value
    return name if attr(ctx.model.config, name) == rec.args[index] else ""


def _projection(ctx: Ctx, width: int, hidden: int) -> str:
    """The HF path of the one linear layer of the backbone's chain mapping `width` features
    to `hidden` (RemBERT's encoder.embedding_hidden_mapping_in), "" if not exactly one."""
    found = [
        f"{path}.{name}"
        for path, owner in _chain(ctx)
        for name, child in owner.children()
        if isinstance(child, ModuleRec)
        and ctx.roles.role(child) == LINEAR
        and tuple(child.args[:2]) == (width, hidden)
    ]
    return found[0] if len(found) == 1 else ""


def _has_weights(rec: ModuleRec) -> bool:
    from codegen.analyze.state_dict import module_keys

    return bool(module_keys(rec))


# roles a prediction head's own module takes: RoBERTa's lm_head (dense, gelu, norm, decoder
# in one forward) reads as an MLP
_HEAD_ROLES = (OTHER, CONTAINER, MLP)


def _prediction_head(ctx: Ctx) -> dict | None:
    """A head whose vocabulary projection follows a dense layer, an activation and a norm
    (BERT's `cls.predictions`, ModernBERT's `lm_head` then `decoder`, RoBERTa's `lm_head`):
    the HF paths of the three layers, the activation's name (an activation module, or one
    function the dense layer's holder calls: RoBERTa's `gelu(x)`), and the key of the logits
    bias (the parameter `_tied_weights_keys` ties the projection's bias to, when tied). Read
    from the entry's modules outside the backbone, one of them holding a linear layer and a
    norm."""
    model = ctx.model
    root = model.stack_owner_path.split(".")[0] if model.stack_owner_path else None
    vocab = attr(model.config, "vocab_size")
    tops = [
        (name, rec)
        for name, rec in model.entry.children()
        if name != root and isinstance(rec, ModuleRec)
    ]
    if not any(
        rec.cls is not None
        and ctx.roles.role(rec) in _HEAD_ROLES
        and _holds(ctx, rec, LINEAR, NORM)
        for _, rec in tops
    ):
        return None
    linears, norms, params, acts = [], [], [], []
    holders = {}  # linear path -> the module holding it
    stack = [(name, rec, name, 0) for name, rec in tops]
    while stack:
        path, node, top, depth = stack.pop()
        role = ctx.roles.role(node)
        if role == LINEAR:
            linears.append((path, node, top))
            continue
        if role == NORM:
            norms.append(path)
            continue
        for child_name, child in node.attrs.items():
            child_path = f"{path}.{child_name}"
            if isinstance(child, ParamRec):
                params.append(child_path)
            elif isinstance(child, ActRec):
                acts.append(child)
            elif isinstance(child, ModuleRec) and depth < 3:
                holders[child_path] = node
                stack.append((child_path, child, top, depth + 1))
    projection = [x for x in linears if len(x[1].args) > 1 and x[1].args[1] == vocab]
    dense = [x for x in linears if x not in projection]
    if len(dense) == 1 and not acts and dense[0][0] in holders:
        acts = _called_activations(ctx, holders[dense[0][0]])
    if len(projection) != 1 or len(dense) != 1 or len(norms) != 1 or len(acts) != 1:
        return None
    proj_path, proj, top = projection[0]
    dense_rec = dense[0][1]
    width = ""
    hidden = attr(model.config, "hidden_size")
    if len(dense_rec.args) > 1 and dense_rec.args[1] != hidden:
        # the head works in a width of its own (RemBERT's output_embedding_size)
        width = _config_field(ctx, dense_rec, 1)
        if not width:
            return None
    bias_key = f"{proj_path}.bias" if linear_bias(proj) else ""
    tied = _tied_map(ctx)
    if bias_key and bias_key in tied and attr(model.config, "tie_word_embeddings"):
        bias_key = f"{tied[bias_key]}"
    if any(p != bias_key for p in params):
        return None  # a tensor of the head's own the logits do not take
    top_rec = dict(tops)[top]
    return {
        # the module the entry calls for the logits: the projection itself, or its holder
        "called": top_rec,
        "site": ctx.class_site(top_rec) or ctx.attr_site(model.entry, top),
        "projection": proj_path,
        "projection_rec": proj,
        "dense": dense[0][0],
        "dense_bias": linear_bias(dense[0][1]) is not False,
        "width": width,
        "norm": norms[0],
        "activation": acts[0].name if isinstance(acts[0].name, str) else "",
        # the config field the activation is looked up by (`ACT2FN[config.<field>]`), and
        # where; "" when the code names the function itself (RoBERTa's `gelu(x)`)
        "activation_field": acts[0].field or "",
        "activation_site": acts[0].site.cite() if acts[0].site is not None else "",
        "bias_key": bias_key,
    }


def _called_activations(ctx: Ctx, rec: ModuleRec) -> list[ActRec]:
    """The activations `rec`'s forward applies (`gelu(x)`, `F.silu(x)`, one written out in
    the analysed sources, a module or function picked from a model-local table by a config
    field: that field kept, so the choice is pinned like an `ACT2FN[config.<field>]`)."""
    if rec.cls is None:
        return []
    terms = [
        t for t in ctx.trace(rec).terms if t.op in ("fn", "call") or t.written_from is not None
    ]
    return applied_activations(ctx, terms, feature="head.transform_activation")


def _wrapped_head(ctx: Ctx) -> dict | None:
    """A module of its own around the vocabulary projection holding no other weights but
    the logits bias `_tied_weights_keys` shares with the projection's (BertGeneration's
    `lm_head`: `decoder` and `bias`): the projection's HF path and record, the module the
    entry calls, and the key of the logits bias."""
    model = ctx.model
    root = model.stack_owner_path.split(".")[0] if model.stack_owner_path else None
    vocab = attr(model.config, "vocab_size")
    for name, rec in model.entry.children():
        if (
            name == root
            or not isinstance(rec, ModuleRec)
            or rec.cls is None
            or ctx.roles.role(rec) not in (OTHER, CONTAINER)
        ):
            continue
        modules = [(n, c) for n, c in rec.children() if isinstance(c, ModuleRec)]
        linears = [(n, c) for n, c in modules if ctx.roles.role(c) == LINEAR]
        weighted = [n for n, c in modules if _has_weights(c)]
        if len(linears) != 1 or weighted != [linears[0][0]]:
            continue
        proj_name, proj = linears[0]
        if len(proj.args) < 2 or proj.args[1] != vocab:
            continue
        path = f"{name}.{proj_name}"
        bias_key = f"{path}.bias" if linear_bias(proj) else ""
        tied = _tied_map(ctx)
        if bias_key in tied and attr(model.config, "tie_word_embeddings"):
            bias_key = tied[bias_key]
        params = [
            f"{name}.{n}"
            for n, c in rec.children()
            if isinstance(c, ParamRec) and c.kind == "parameter"
        ]
        if any(p != bias_key for p in params):
            continue  # a tensor of the module's own the logits do not take
        return {"projection": path, "projection_rec": proj, "called": rec, "bias_key": bias_key}
    return None


def _tied_map(ctx: Ctx) -> dict:
    """The entry class's `_tied_weights_keys` (tied key -> the key it shares), {} if unknown."""
    model = ctx.model
    found = model.project.find_class_attr(model.entry_cls, "_tied_weights_keys")
    if found is None:
        return {}
    try:
        value = model.interp.class_attr_value(found[0], found[1])
    except Unknown:
        return {}
    return value if isinstance(value, dict) else {}


def _nested_tables(ctx: Ctx, *, embeddings: bool = True, head: bool = True) -> None:
    """Embeddings or an output head the analysis cannot describe yet are reported, so no
    package is planned without them: the backbone's tables inside a module of their own
    (BERT's `embeddings`: word, position and token-type tables summed, maybe normed), and a
    head module whose vocabulary projection sits behind other layers (BERT's prediction
    head: dense, activation, norm, then the decoder)."""
    model = ctx.model
    # the modules from the entry down to the stack's owner (BERT's bert, bert.encoder)
    chain, node = [], model.entry
    for part in model.stack_owner_path.split(".") if model.stack_owner_path else ():
        node = node.attrs.get(part) if isinstance(node, ModuleRec) else None
        if isinstance(node, ModuleRec):
            chain.append(node)
    tables = [
        child
        for owner in chain
        for _, child in owner.children()
        if isinstance(child, ModuleRec)
        and child.cls is not None
        and child not in chain
        and _holds(ctx, child, EMBEDDING)
    ]
    # reported under names of their own: the rules realise embedding.module and
    # head.transform as the analysis describes them, not these
    if tables and embeddings:
        ctx.unsupported(
            "embedding.module_layers",
            "the embedding tables are a module of their own holding more than the word,"
            " position and token-type tables and a norm the embedding_module rule builds"
            f" ({_weighted_children(tables[0])}): no rule yet",
            ctx.class_site(tables[0]),
        )
    root = model.stack_owner_path.split(".")[0] if model.stack_owner_path else None
    for name, child in model.entry.children():
        if name == root or not isinstance(child, ModuleRec) or child.cls is None:
            continue
        if head and ctx.roles.role(child) in _HEAD_ROLES and _holds(ctx, child, LINEAR, NORM):
            ctx.unsupported(
                "head.transform_layers",
                "the output head is a module with layers before its vocabulary projection"
                " other than one dense layer, activation and norm (BERT's prediction head):"
                " no rule yet",
                ctx.class_site(child),
            )
            break


def _weighted_children(rec: ModuleRec) -> str:
    """The names of `rec`'s submodules that hold weights, comma-separated."""
    return ", ".join(n for n, c in rec.children() if isinstance(c, ModuleRec) and _has_weights(c))


def _holds(ctx: Ctx, rec: ModuleRec, *roles: str, depth: int = 0) -> bool:
    """`rec` has submodules (up to three levels down) of every role in `roles`."""
    found = set()

    def visit(node: ModuleRec, level: int) -> None:
        for _, child in node.children():
            if isinstance(child, ModuleRec):
                found.add(ctx.roles.role(child))
                if level < 2:
                    visit(child, level + 1)

    visit(rec, depth)
    return set(roles) <= found


def detect(ctx: Ctx) -> tuple[Embedding, Head]:
    model = ctx.model
    cfg = model.config
    emb_name, emb = _embedding(ctx)
    own = _embeddings_module(ctx) if emb is None else None
    tables = _module_tables(ctx, *own) if own is not None else None
    head_name, head = _head(ctx)
    pred = _prediction_head(ctx)
    # a backbone without tables of its own or a head not found: maybe a BERT-style part
    # the rules do not realise (reported, never planned without)
    if (emb is None and tables is None) or (pred is None and (head is None or emb is None)):
        _nested_tables(ctx, embeddings=emb is None and tables is None, head=pred is None)
    head_called = head
    wrapped = _wrapped_head(ctx) if pred is None and head is None else None
    if pred is not None:
        head_name, head, head_called = pred["projection"], pred["projection_rec"], pred["called"]
        ctx.cite("head.transform", f"{pred['site']} (dense, activation, norm, projection)")
        ctx.cite("head.transform_activation_field", pred["activation_site"] or pred["site"])
    elif wrapped is not None:
        head_name, head = wrapped["projection"], wrapped["projection_rec"]
        head_called = wrapped["called"]
    word = emb
    if tables is not None:
        ctx.cite("embedding.module", f"{ctx.class_site(own[1])} (tables summed in {own[0]})")
        emb = own[1]
        word = emb.attrs.get(tables["word"].rsplit(".", 1)[-1])

    # -- tying ------------------------------------------------------------------------------------
    tied: bool | str = UNKNOWN
    found = model.project.find_class_attr(model.entry_cls, "_tied_weights_keys")
    declared = False
    if found is not None:
        try:
            value = model.interp.class_attr_value(found[0], found[1])
            declared = bool(value)
        except Unknown:
            declared = True
    flag = attr(cfg, "tie_word_embeddings")
    sub = getattr(model.stack_owner, "attrs", {}).get("config") if model.stack_owner else None
    if flag is None and hasattr(sub, "attrs"):
        flag = attr(sub, "tie_word_embeddings")
    if head is None and emb is not None:
        tied = True  # logits from the embedding matrix
        ctx.cite("embedding.tied", f"{model.entry_cls.cite()} (no separate output projection)")
    elif found is None:
        tied = False
        ctx.cite("embedding.tied", f"{model.entry_cls.cite()} (no _tied_weights_keys)")
    else:
        tied = bool(flag) and declared
        ctx.cite(
            "embedding.tied",
            f"{found[0].cite(found[1])}; {ctx.cite_config('tie_word_embeddings', bool(flag))}",
        )

    # -- embedding scale --------------------------------------------------------------------------
    scale: bool | str = False
    affine: dict | None = None
    if emb is not None and emb.cls is not None:
        trace = ctx.trace(emb)
        for t in trace.terms:
            if t.op in ("mul", "div"):
                factor = _scale_factor(t)
                if factor is not None and (factor != 1 or isinstance(factor, _Configured)):
                    scale = True
                    ctx.cite(
                        "embedding.scale",
                        f"{_where(t, ctx.class_site(emb))} (x {_describe(factor)})",
                    )
                    break
    if scale is False and model.stack_owner is not None and emb is not None:
        owner = model.stack_owner
        trace = ctx.trace(owner, inline=False)
        emb_calls = [t for t in trace.terms if t.op == "call" and t.module is emb]
        holder = _holder(model.entry, emb)
        if not emb_calls and holder is not None and holder is not owner:
            # the layers' stacks are modules of the backbone (HRM's two stacks): the first
            # layer is reached through the backbone's own forward
            owner = holder
            trace = ctx.trace(owner)
            emb_calls = [t for t in trace.terms if t.op == "call" and t.module is emb]
        layer_calls = [
            t
            for t in trace.terms
            if t.op == "call"
            and isinstance(t.module, ModuleRec)
            and ctx.roles.role(t.module) == LAYER
        ]
        if emb_calls and layer_calls:
            inp = primary_input(layer_calls[0])
            if isinstance(inp, Term):
                for t in walk(inp):
                    if t.op in ("mul", "div") and any(
                        any(x is e for x in walk(t)) for e in emb_calls
                    ):
                        factor = _scale_factor(t)
                        if isinstance(factor, ParamRec) and factor.kind == "parameter":
                            affine = _learned_affine(ctx, model.stack_owner, t, factor)
                            if affine is not None:
                                scale = "learned_affine"
                                ctx.cite(
                                    "embedding.scale",
                                    f"{_where(t, ctx.class_site(owner))} ((x + {affine['bias']})"
                                    f" * {affine['scale']} per channel)"
                                    if affine["bias"]
                                    else f"{_where(t, ctx.class_site(owner))}"
                                    f" (x * {affine['scale']} per channel)",
                                )
                            break
                        if factor is not None and (factor != 1 or isinstance(factor, _Configured)):
                            scale = True
                            ctx.cite(
                                "embedding.scale",
                                f"{_where(t, ctx.class_site(owner))} (x {_describe(factor)})",
                            )
                            break
                        if factor is None:
                            scale = True
                            ctx.cite("embedding.scale", ctx.class_site(owner))
    if "embedding.scale" not in ctx.evidence:
        ctx.cite(
            "embedding.scale", ctx.class_site(emb) if emb is not None and emb.cls else ctx.site(emb)
        )

    # -- head -------------------------------------------------------------------------------------
    softcap: bool | str = False
    logit_scale: bool | str = False
    logit_scale_on = "logits"
    head_bias: bool | str = False
    if head is not None:
        if ctx.roles.role(head) == LINEAR:
            flag = linear_bias(head)
            head_bias = UNKNOWN if flag is None else flag
        ctx.cite("head.bias", ctx.site(head))
        trace = ctx.trace(model.entry, inline=False)
        head_calls = [t for t in trace.terms if t.op == "call" and t.module is head_called]
        if not head_calls:
            softcap = logit_scale = UNKNOWN
        after = [t for t in trace.terms if any(any(x is h for x in walk(t)) for h in head_calls)]
        tanhs = [t for t in after if t.op == "fn" and t.name.rsplit(".", 1)[-1] == "tanh"]
        # a module of the entry whose forward takes the tanh (a softcap module: inkling2's
        # `self.logit_softcap(logits)`), called on the logits
        tanhs += [t for t in after if t.op == "call" and _takes_tanh(ctx, t.module)]
        if tanhs:
            softcap = True
            ctx.cite(
                "head.logit_softcap",
                tanhs[0].site.cite() if tanhs[0].site else model.entry_cls.cite(),
            )
        around = set()
        for t in tanhs:
            around |= {id(a) for a in t.args if isinstance(a, Term)}
        for t in after:
            if (
                t.op in ("mul", "div")
                and id(t) not in around
                and not any(isinstance(a, Term) and a in tanhs for a in t.args)
            ):
                factor = _scale_factor(t)
                if factor is not None and (factor != 1 or isinstance(factor, _Configured)):
                    logit_scale = True
                    ctx.cite(
                        "head.logit_scale",
                        f"{_where(t, model.entry_cls.cite())} "
                        f"(logits {'x' if t.op == 'mul' else '/'} {_describe(factor)})",
                    )
                    break
        if logit_scale is False:
            # hidden states scaled on their way into the head: the logits scale the same
            for t in (x for call in head_calls for x in _before_head(call)):
                factor = _scale_factor(t) if t.op in ("mul", "div") else None
                if factor is not None and (factor != 1 or isinstance(factor, _Configured)):
                    logit_scale, logit_scale_on = True, "input"
                    ctx.cite(
                        "head.logit_scale",
                        f"{_where(t, model.entry_cls.cite())} (head input "
                        f"{'x' if t.op == 'mul' else '/'} {_describe(factor)})",
                    )
                    break
        if head.cls is not None and _normalised_head(ctx, head):
            ctx.unsupported(
                "head.normalized",
                "output head weight rows normalised before the product (a NormHead)",
                ctx.class_site(head),
            )
        head_site = ctx.attr_site(model.entry, head_name) or (pred and pred["site"])
        ctx.cite("head.logit_softcap", ctx.evidence.get("head.logit_softcap") or head_site)
        ctx.cite("head.logit_scale", ctx.evidence.get("head.logit_scale") or head_site)
    else:
        ctx.cite("head.logit_softcap", model.entry_cls.cite())
        ctx.cite("head.logit_scale", model.entry_cls.cite())
        ctx.cite("head.bias", model.entry_cls.cite())
    head_features = Head(
        logit_softcap=softcap,
        logit_scale=logit_scale,
        logit_scale_on=logit_scale_on,
        bias=head_bias,
        vocab_crop=vocab_crop.detect(ctx, head_name if head is not None else None),
    )
    if pred is not None:
        head_features = dataclasses.replace(
            head_features,
            transform=True,
            transform_dense=pred["dense"],
            transform_norm=pred["norm"],
            transform_activation=pred["activation"],
            transform_activation_field=pred["activation_field"],
            transform_dense_bias=pred["dense_bias"],
            transform_width=pred["width"],
            projection=pred["projection"],
            bias_key=pred["bias_key"],
        )
    if wrapped is not None:
        head_features = dataclasses.replace(
            head_features, projection=wrapped["projection"], bias_key=wrapped["bias_key"]
        )
    positions, offset, table = _positions(ctx, emb_name)
    if tables is not None and tables["positions"]:
        positions, offset, table = "learned", tables["offset"], tables["positions"]
        ctx.cite("embedding.positions", f"{ctx.class_site(own[1])} (learned table {table})")
    embedding = Embedding(
        tied=tied,
        scale=scale,
        learned_affine=affine,
        positions=positions,
        position_offset=offset,
        position_table=table,
        init_std=embedding_init_std(ctx),
        norm=_embedding_norm(ctx, emb),
        norm_module=_embedding_norm_module(ctx, emb),
        padding_idx=word_padding(ctx, word if isinstance(word, ModuleRec) else None),
        extra_rows=word_rows(ctx, word if isinstance(word, ModuleRec) else None, head),
        vocab_field=rows_field(word),
    )
    if embedding.vocab_field is not None:
        ctx.cite("embedding.vocab_field", f"{ctx.site(word)} (config.{embedding.vocab_field})")
    side = tables["side"] if tables is not None else None
    if side:
        names = ", ".join(table[0].rsplit(".", 1)[-1] for table in side["tables"])
        ctx.cite(
            "embedding.side_tables",
            f"{side['site'] or ctx.class_site(own[1])} ({names} rows concatenated to the token"
            f" rows, mapped by {side['projection']}"
            + (f" when {side['switch']}" if side["switch"] else "")
            + "; row 0 without ids)",
        )
    elif own is not None:
        ctx.cite("embedding.side_tables", ctx.class_site(own[1]))
    if tables is not None:
        embedding = dataclasses.replace(
            embedding,
            module=True,
            word_table=tables["word"],
            token_type_table=tables["token_type"],
            module_norm=tables["norm"],
            module_width=tables["width"],
            module_projection=tables["projection"],
            module_projection_switched=tables["projection_switched"],
            side_tables=tables["side"]["tables"] if tables["side"] else (),
            side_projection=tables["side"]["projection"] if tables["side"] else "",
            side_switch=tables["side"]["switch"] if tables["side"] else "",
            position_padding=position_padding(ctx, own[1], tables["positions"])
            if tables["positions"]
            else "",
        )
    return embedding, head_features


def _embedding_norm(ctx: Ctx, emb: ModuleRec | None) -> bool:
    """The first layer's input is a norm module applied to the embeddings' output."""
    owner = ctx.model.stack_owner
    site = ctx.class_site(owner) if owner is not None else None
    if owner is None or emb is None:
        ctx.cite("embedding.norm", site or "no decoder stack")
        return False
    trace = ctx.trace(owner, inline=False)
    layers = [
        t
        for t in trace.terms
        if t.op == "call" and isinstance(t.module, ModuleRec) and ctx.roles.role(t.module) == LAYER
    ]
    inp = primary_input(layers[0]) if layers else None
    if isinstance(inp, Term):
        for t in walk(inp):
            if (
                t.op == "call"
                and isinstance(t.module, ModuleRec)
                and ctx.roles.role(t.module) == NORM
                and any(x.op == "call" and x.module is emb for x in walk(t))
            ):
                ctx.cite("embedding.norm", f"{_where(t, site)} (norm before the first layer)")
                return True
    ctx.cite("embedding.norm", f"{site} (embeddings reach the first layer unnormalised)")
    return False


def _embedding_norm_module(ctx: Ctx, emb: ModuleRec | None) -> str:
    """The HF module path of the norm applied to the embeddings before the first layer when
    the backbone calls it once (a module of its own, bloom); "" when there is none or the
    backbone applies the same module again (the final norm, nanochat)."""
    owner = ctx.model.stack_owner
    if owner is None or emb is None:
        return ""
    terms = ctx.trace(owner, inline=False).terms
    layers = [
        t
        for t in terms
        if t.op == "call" and isinstance(t.module, ModuleRec) and ctx.roles.role(t.module) == LAYER
    ]
    inp = primary_input(layers[0]) if layers else None
    for t in walk(inp) if isinstance(inp, Term) else ():
        if not (
            t.op == "call"
            and isinstance(t.module, ModuleRec)
            and ctx.roles.role(t.module) == NORM
            and any(x.op == "call" and x.module is emb for x in walk(t))
        ):
            continue
        calls = sum(1 for x in terms if x.op == "call" and x.module is t.module)
        name = next((n for n, child in owner.children() if child is t.module), None)
        if calls == 1 and name is not None:
            return ".".join(p for p in (ctx.model.stack_owner_path, name) if p)
    return ""


def _positions(ctx: Ctx, token_name: str | None) -> tuple[str, int, str]:
    """(kind, offset, module path) of the absolute positions added to the token embeddings."""
    model = ctx.model
    owner = model.stack_owner
    rows = attr(model.config, "max_position_embeddings")
    if owner is not None and isinstance(rows, int):
        for name, child in owner.children():
            if name == token_name or not isinstance(child, ModuleRec):
                continue
            if ctx.roles.role(child) != EMBEDDING or len(child.args) < 2:
                continue
            if any(child is t for t in ctx.rope_tables):  # the rotation's sin/cos rows
                continue
            size = child.args[0]
            if isinstance(size, int) and 0 <= size - rows <= 2:
                path = ".".join(p for p in (model.stack_owner_path, name) if p)
                where = ctx.attr_site(owner, name)
                ctx.cite("embedding.positions", f"{where} (learned table {name})")
                return "learned", size - rows, path
    found = _sinusoid(ctx) if not _has_rotary(ctx) else None
    if found is not None:
        where, kind = found
        offset = _offset(owner, token_name)
        ctx.cite("embedding.positions", f"{where} ({kind} table from row {offset})")
        return kind, offset, ""
    ctx.cite("embedding.positions", ctx.class_site(owner) if owner is not None else "?")
    return "none", 0, ""


def _has_rotary(ctx: Ctx) -> bool:
    """The attention rotates q/k (the rope detector's evidence says whether it does)."""
    return "no rotary" not in ctx.evidence.get("rope.type", "")


def _sinusoid(ctx: Ctx) -> tuple[str, str] | None:
    """(site, kind) of the function or method of the modeling file computing a sin/cos
    position table. `sinusoidal`: tensor2tensor's form (fairseq, XGLM), [sin | cos] of
    position times exp(-k * log(10000) / (dim / 2 - 1)); `sinusoidal_pow`: [sin | cos]
    halves of position / 10000^(2 * (i // 2) / dim) (CTRL's even and odd columns); any other
    spelling is `sinusoidal_other`."""
    import libcst.matchers as m

    sf = ctx.model.modeling
    functions = _reached_functions(ctx)
    over_half_less_one = m.BinaryOperation(
        operator=m.Divide(), right=m.BinaryOperation(operator=m.Subtract(), right=m.Integer("1"))
    )
    for fn in functions:
        signals = ctx.roles.function_signals(sf, fn)
        ops = signals.ops
        if {"sin", "cos"} <= ops:
            if "log" in ops and bool(findall(fn, over_half_less_one)):
                return sf.cite(fn), "sinusoidal"
            if _pow_halves(sf, fn, signals):
                return sf.cite(fn), "sinusoidal_pow"
            return sf.cite(fn), "sinusoidal_other"
    return None


def _reached_functions(ctx: Ctx) -> list:
    """The module functions called by the methods of the classes the model builds (and of
    their bases in the file), then those methods, in the file's order: a sin/cos of a class
    the model never builds (a vision tower's rotation beside a text model) is no position
    table of it."""
    sf = ctx.model.modeling
    classes: list = []
    built = [rec for _, rec in walk_tree(ctx.model.entry) if isinstance(rec, ModuleRec)]
    pending = [rec.cls for rec in built if rec.cls is not None]
    while pending:
        cls = pending.pop()
        if cls.sf is not sf or any(cls is seen for seen in classes):
            continue
        classes.append(cls)
        pending += [sf.classes[base] for base in cls.bases if base in sf.classes]
    methods = [fn for cls in sorted(classes, key=lambda c: c.line) for fn in cls.methods.values()]
    called: set[str] = set()
    for fn in methods:
        called |= ctx.roles.function_signals(sf, fn).functions
    return [fn for name, fn in sf.functions.items() if name in called] + methods


def _pow_halves(sf, fn, signals) -> bool:
    """The table is cat([sin(a[:, 0::2]), cos(a[:, 1::2])]) with the angle `a` of column i
    position / 10000^(2 * (i // 2) / dim), in `fn` or a module function it calls."""
    import libcst.matchers as m

    pair_index = m.BinaryOperation(
        operator=m.Multiply(),
        left=m.Integer("2"),
        right=m.BinaryOperation(operator=m.FloorDivide(), right=m.Integer("2")),
    )
    exponent = m.BinaryOperation(operator=m.Divide(), left=pair_index)
    bodies = [fn] + [sf.functions[name] for name in signals.functions if name in sf.functions]
    base_10000 = m.Call(args=[m.Arg(value=m.Integer("10000")), m.Arg(value=exponent)])
    return (
        "cat" in signals.ops
        and signals.step2
        and {"pow", "power"} & signals.ops != set()
        and any(findall(body, base_10000) for body in bodies)
    )


def _offset(owner, token_name: str | None) -> int:
    """The row of position 0 in a computed table: its module's integer `offset` (XGLM: 2)."""
    for name, child in owner.children() if owner is not None else ():
        value = getattr(child, "attrs", {}).get("offset") if name != token_name else None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def _takes_tanh(ctx, module) -> bool:
    """`module` is a house-defined module whose forward applies a tanh to its input."""
    if not isinstance(module, ModuleRec) or module.cls is None:
        return False
    trace = ctx.trace(module)
    return any(t.op == "fn" and t.name.rsplit(".", 1)[-1] == "tanh" for t in trace.terms)
