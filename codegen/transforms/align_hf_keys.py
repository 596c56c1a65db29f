"""Point the adapter table at the target checkpoint's key names, and drop rows it lacks."""

from __future__ import annotations

import ast
import json
import re

import libcst as cst
import libcst.matchers as m

from codegen.analyze import walk
from codegen.analyze.conversion import analysed, on_disk
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, findall, run
from codegen.transforms.transposed_linears import AfterFromHfMap

_LAYER = "{}"
KEY_WORD = "{*}"  # a ModuleDict key in a row (codegen/adapter.py)


def _pattern(template: str) -> re.Pattern:
    """A row's HF key as a pattern over the target's keys (which keep `{}` for the layer)."""
    return re.compile("^" + re.escape(template).replace(re.escape(KEY_WORD), r"[^.]+") + "$")


class AlignHfKeys(Transform):
    """Rename each HF key of the table to the target's key for the same weight.

    A key the target has is kept. Otherwise the target key whose dotted components belong
    to the same synonym groups (`rules/names.py`, e.g. `mlp.gate_proj` ~
    `block_sparse_moe.w1`) replaces it. A row left with no target key at all is dead for
    this checkpoint and removed, unless it is the bias of a projection the model builds
    with a config-switched bias (`bias=args.attention_bias`): checkpoints with the switch on
    carry it. A reference row that matches ambiguously is left for verify to report.
    `chunked` (on-disk key tail -> the key tails it holds as equal row blocks) becomes the
    adapter's `chunked` table: the rows name the parts, which the adapter splits out.
    """

    name = "align_hf_keys"

    def apply(
        self, package, features=None, *, prefix, layer_keys, other_keys, synonyms=None, chunked=()
    ):
        targets, pair, leftovers = _pairing(
            package, features, prefix, layer_keys, other_keys, synonyms
        )
        wanted = set(targets)
        model = package.files.get("model.py")
        switched = switched_biases(model) if model is not None else set()
        built = built_modules(model) if model is not None else set()
        # a weight inside a branch-built module counts only where HF's layers themselves
        # branch on their FFN (`moe.dense_rule`: cohere2_moe's mlp_layer_types); a
        # reference's dense branch a target never takes (mixtral) carries no live rows
        nested = bool(features is not None and features.get("moe.dense_rule"))
        # the short-conv mixer a per-layer list builds instead of attention (block.short_conv):
        # every row under it is live for the settings with such layers
        if features is not None and features.get("block.short_conv"):
            built = built | {"layers.{}.conv"}

        conversions = analysed(features)

        def rewrite(key: str, value: str):
            hf_key = json.loads(key)
            if hf_key in wanted:
                return [(key, value)]
            # the name transformers' conversion mapping loads the module key from (HY-V4's
            # `attn_hc.fn` is `hc_pre.hc_attn_layer.hc_fn` on disk)
            stored = on_disk(conversions, hf_key)
            if stored in wanted:
                renamed[hf_key] = stored
                return [(json.dumps(stored), value)]
            if KEY_WORD in hf_key:  # a ModuleDict's rows: kept where the target has its keys
                found = _pattern(hf_key)
                return [(key, value)] if any(found.match(t) for t in targets) else []
            candidates = pair(hf_key) or leftovers.get(hf_key, [])
            if len(candidates) == 1:
                renamed[hf_key] = candidates[0]
                return [(json.dumps(candidates[0]), value)]
            if not candidates:  # the toy checkpoint has no such weight
                live = _live_for_some_setting(value, switched, built, nested)
                if not live:
                    return []
                # a bias only another setting builds sits beside its weight (modernbert's
                # attn.q_proj.bias when attention_bias is on): the weight's row was renamed
                weight = renamed.get(hf_key.removesuffix(".bias") + ".weight")
                if hf_key.endswith(".bias") and weight is not None:
                    return [(json.dumps(weight.removesuffix(".weight") + ".bias"), value)]
                return [(key, value)]
            return [(key, value)]

        renamed: dict[str, str] = {}
        run(package, "state_dict_adapter.py", EditDict("from_hf_map", rewrite))
        if renamed:  # the keys stored transposed are named as their rows are
            run(package, "state_dict_adapter.py", _RenameTransposed(renamed), required=False)
        if chunked:
            listed = ", ".join(f"{fused!r}: {tuple(parts)!r}" for fused, parts in chunked)
            note = "# checkpoint tensors holding the tensors of several rows (split on load)\n"
            run(package, "state_dict_adapter.py", AfterFromHfMap(f"{note}chunked = {{{listed}}}"))


def _pairing(package, features, prefix, layer_keys, other_keys, synonyms=None):
    """The target keys; `pair`: a row's HF key -> the target keys whose components are its
    synonyms; and the rows no synonym pairs -> the one target key each pairs with by
    elimination (`_leftovers`)."""
    from codegen.scaffold.table import load_names

    groups = synonyms or load_names().KEY_SYNONYMS
    canonical = {alias: group[0] for group in groups for alias in group}
    # the module the analysis found the layers in is the base model, whatever its name
    # (a new architecture's own base_model_prefix): it pairs with the reference's
    base = prefix.split(".")[0] if prefix else ""
    if base and base not in canonical and "model" in canonical:
        canonical[base] = canonical["model"]
    layer_prefix = f"{prefix}.{_LAYER}." if prefix else ""
    targets = [layer_prefix + key for key in layer_keys] + list(other_keys)
    roles = module_roles(features, canonical)
    as_role = {
        key: layer_prefix + _as_role(key[len(layer_prefix) :], roles)
        if layer_prefix and key.startswith(layer_prefix)
        else key
        for key in targets
    }
    by_shape: dict[tuple, list[str]] = {}
    for key in targets:
        by_shape.setdefault(_shape(as_role[key], canonical), []).append(key)

    def pair(hf_key: str) -> list[str]:
        return [
            c
            for c in by_shape.get(_shape(_relayer(hf_key, layer_prefix), canonical), [])
            if c.count(_LAYER) == hf_key.count(_LAYER)
        ]

    conversions = analysed(features)

    def stored(key: str) -> str:  # the checkpoint's name for a module key (conversion mapping)
        return on_disk(conversions, key)

    leftovers = _leftovers(package, targets, pair, layer_prefix, canonical, as_role, stored)
    return targets, pair, leftovers


def row_named(package, features, key: str, prefix, layer_keys, other_keys) -> str | None:
    """The adapter row's HF key that becomes `key` when the rows are renamed to the keys
    `prefix`, `layer_keys` and `other_keys` (as `AlignHfKeys` pairs them: the key itself, a
    synonym, or the one row left over for it), if one row does."""
    _, pair, leftovers = _pairing(package, features, prefix, layer_keys, other_keys)
    rows = []

    def collect(hf, value):
        rows.append(json.loads(hf))
        return [(hf, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", collect))
    if key in rows:
        return key
    found = [row for row in rows if (pair(row) or leftovers.get(row, [])) == [key]]
    return found[0] if len(found) == 1 else None


def _as_role(key: str, roles: list[tuple[str, str]]) -> str:
    """A layer key under the role of the module it starts with: the paths are the layer's
    own, so `output.dense` (BERT's FFN down projection) does not rename the attention's
    `attention.output.dense`."""
    for path, role in roles:  # longest first
        if key.startswith(f"{path}."):
            return role + key[len(path) :]
    return key


def module_roles(features, canonical: dict[str, str]) -> list[tuple[str, str]]:
    """(the target layer's module path, the canonical path of its role), longest first, from
    where the analysis found each block norm and FFN projection (`norm.block_names`,
    `ffn.block_names`): CTRL's `layernorm1` is the input norm, its `ffn.0` the up projection.
    A norm whose name already belongs to a synonym group keeps it."""
    if features is None:
        return []
    found = {}
    for house, hf in features.get("norm.block_names") or ():
        if house in canonical and hf not in canonical:
            found[hf] = canonical[house]
    mlp = canonical.get("mlp", "mlp")
    for role, path in features.get("ffn.block_names") or ():
        found[path] = f"{mlp}.{canonical.get(role, role)}"
    return sorted(found.items(), key=lambda item: -len(item[0]))


def _leftovers(
    package, targets, pair, layer_prefix, canonical, as_role, stored=lambda key: key
) -> dict[str, list[str]]:
    """Reference keys no synonym pairs, each with the one target key no row took that
    differs from it by a single component (`attn.c_proj` is GPT-2's o_proj, though `c_proj`
    names the down projection elsewhere): a name shared by two roles, or a level one side
    lacks, pairs by elimination. A row whose checkpoint name (`stored`: transformers'
    conversion mapping) is a target has taken it (DeepSeek-V4's `self_attn.q_a_proj` is
    `attn.wq_a` on disk): it is not left over, and does not compete for another key."""
    rows = []

    def collect(key, value):
        if KEY_WORD not in key:  # a ModuleDict's rows pair by their pattern
            rows.append(key)
        return [(key, value)]

    run(package, "state_dict_adapter.py", EditDict("from_hf_map", collect))
    keys = [json.loads(k) for k in rows]
    renamed = {key: stored(key) for key in keys if key not in targets}
    renamed = {key: name for key, name in renamed.items() if name in targets}
    taken = {c for key in keys for c in ([key] if key in targets else pair(key))}
    taken |= set(renamed.values())
    free = [t for t in targets if t not in taken]
    unpaired = [k for k in keys if k not in targets and k not in renamed and not pair(k)]

    def near(a: str, b: str) -> bool:
        return _one_edit(
            _shape(_relayer(a, layer_prefix), canonical), _shape(as_role[b], canonical)
        )

    out = {}
    for key in unpaired:
        found = [t for t in free if t.count(_LAYER) == key.count(_LAYER) and near(key, t)]
        if len(found) == 1 and sum(near(k, found[0]) for k in unpaired) == 1:
            out[key] = found
    return out


def _one_edit(x: tuple, y: tuple) -> bool:
    """The component paths differ by one component: renamed (`attn.c_proj` for `o_proj`),
    or one more level on either side (OPT's `model.decoder.embed_tokens`, its `fc1` with no
    `mlp` container)."""
    if len(x) == len(y):
        changed = [(p, q) for p, q in zip(x, y, strict=True) if p != q]
        return len(changed) == 1 and _is_norm(changed[0][0]) == _is_norm(changed[0][1])
    short, long = sorted((x, y), key=len)
    if len(long) != len(short) + 1:
        return False
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def _is_norm(component: str) -> bool:
    """A norm's name (a renamed norm pairs with a norm, a projection with a projection)."""
    return "norm" in component or component.startswith("ln")


def _relayer(key: str, layer_prefix: str) -> str:
    """A reference layer key moved under the target's layer prefix (e.g. transformer.h.{})."""
    marker = f".{_LAYER}."
    if marker not in key or not layer_prefix:
        return key
    return layer_prefix + key.split(marker, 1)[1]


def _shape(key: str, canonical: dict[str, str]) -> tuple[str, ...]:
    return tuple(canonical.get(part, part) for part in key.split("."))


def _live_for_some_setting(value: str, switched: set[str], built: set[str], nested: bool) -> bool:
    """A row the toy checkpoint lacks but another switch setting creates: the bias of a
    projection built with `bias=<config>`, or a weight of a module the model builds on a
    branch, directly (a `wq` when `q_lora_rank` is None) or, with `nested`, inside it
    (`feed_forward.w1` of the dense FFN a block builds when its layer is not MoE)."""
    house = ast.literal_eval(value) or ""  # a long row's value is a parenthesised string
    parts = house.split(".")
    if len(parts) < 2:
        return False
    if parts[-1] == "bias" and parts[-2] in switched:
        return True
    if ".".join(parts[:3]) in built:  # a whole mixer built per layer kind (short conv)
        return True
    return any(part in built for part in (parts[:-1] if nested else parts[-2:-1]))


_BUILDS = m.Assign(targets=[m.AssignTarget(m.Attribute(value=m.Name("self")))], value=m.Call())


def built_modules(module: cst.Module) -> set[str]:
    """Attributes assigned `self.<name> = <call>` inside an `if` (built for some configs),
    and, where a conditional expression chooses between two modules, one a class of the
    module (`self.feed_forward = Experts(args) if args.x else FeedForward(...)`), that
    class's own `self.<name> = <call>` attributes."""
    found: set[str] = set()
    for branch in findall(module, m.If()):
        for node in findall(branch, _BUILDS):
            found.add(node.targets[0].target.attr.value)
    classes = {c.name.value: c for c in findall(module, m.ClassDef())}
    # a choice between two modules (not a module or None: that one's rows follow its layers)
    for choice in findall(module, m.IfExp(body=m.Call(), orelse=m.Call())):
        for side in (choice.body, choice.orelse):
            if not m.matches(side, m.Call(func=m.Name())) or side.func.value not in classes:
                continue
            for node in findall(classes[side.func.value], _BUILDS):
                found.add(node.targets[0].target.attr.value)
    # a module a bool field switches on (`self.moe = MoE(args) if args.enable_moe_block else
    # None`): everything it builds, down through the package's own classes
    switched = m.IfExp(
        test=m.Attribute(value=m.Name("args")), body=m.Call(func=m.Name()), orelse=m.Name("None")
    )
    pending = [choice.body.func.value for choice in findall(module, switched)]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen or name not in classes:
            continue
        seen.add(name)
        for node in findall(classes[name], _BUILDS):
            found.add(node.targets[0].target.attr.value)
            if m.matches(node.value, m.Call(func=m.Name())):
                pending.append(node.value.func.value)
    return found


def switched_biases(module: cst.Module) -> set[str]:
    """Attributes built as `self.<name> = nn.Linear(..., bias=<not a literal>)`."""
    finder = _SwitchedBiases()
    walk.visit(module, finder)  # reads only: no rebuilt tree
    return finder.found


class _SwitchedBiases(cst.CSTVisitor):
    """A plain visitor (matchers' findall cost 0.07 s per model.py, run for every
    reference the planner weighs)."""

    def __init__(self):
        self.found: set[str] = set()

    def visit_Assign(self, node: cst.Assign) -> None:
        target = node.targets[0].target if len(node.targets) == 1 else None
        if not (
            isinstance(target, cst.Attribute)
            and isinstance(target.value, cst.Name)
            and target.value.value == "self"
        ):
            return
        # a projection some layers do without (`None if ... else nn.Linear(...)`) is built
        # by its branch
        value = node.value
        builds = [value.body, value.orelse] if isinstance(value, cst.IfExp) else [value]
        for build in builds:
            if not isinstance(build, cst.Call):
                continue
            for arg in build.args:
                if arg.keyword is not None and arg.keyword.value == "bias":
                    literal = isinstance(arg.value, cst.Name) and arg.value.value in (
                        "True",
                        "False",
                    )
                    if not literal:
                        self.found.add(target.attr.value)


class _RenameTransposed(cst.CSTTransformer):
    """The checkpoint keys in the adapter's `transposed = frozenset({...})` renamed by
    `renamed` (HF key template -> the checkpoint's)."""

    def __init__(self, renamed: dict[str, str]):
        super().__init__()
        self.renamed, self.hits, self.inside = renamed, 0, False

    def visit_Assign(self, node: cst.Assign) -> None:
        target = node.targets[0].target
        self.inside = isinstance(target, cst.Name) and target.value == "transposed"

    def leave_Assign(self, original, updated):
        self.inside = False
        return updated

    def leave_SimpleString(self, original, updated):
        key = original.evaluated_value if self.inside else None
        if key in self.renamed:
            self.hits += 1
            return updated.with_changes(value=json.dumps(self.renamed[key]))
        return updated
