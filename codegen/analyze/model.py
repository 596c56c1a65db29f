"""The analysed network: entry class, config, static instantiation, decoder stack.

`load_model(target)` reads the modeling file, picks the class a user would load (the causal LM
head, or the conditional-generation / masked-LM / base model when there is none), builds its
config statically and instantiates it with `evaluate.Interp`. The decoder stack is then found
structurally: the `ModuleList` whose items own a token mixer and a feed-forward.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from codegen.analyze.config import ConfigBuilder, text_config_values
from codegen.analyze.delegates import read_delegates
from codegen.analyze.evaluate import (
    BudgetExceeded,
    ConfigObj,
    Interp,
    ModuleListRec,
    ModuleRec,
    ParamRec,
    Site,
    Unknown,
)
from codegen.analyze.locate import Target, model_type_files
from codegen.analyze.roles import (
    ATTENTION,
    EMBEDDING,
    LAYER,
    MIXER,
    MLP,
    MOE,
    RoleBook,
)
from codegen.analyze.source import ClassInfo, Project, SourceFile
from codegen.errors import CodegenError

# auto_map entries naming the class a user loads, in order of preference
_AUTO_MAP_KEYS = ("AutoModelForCausalLM", "AutoModelForSeq2SeqLM", "AutoModel")
# Preference among the model classes of a file (HF naming conventions, not model names).
_ENTRY_SUFFIXES = (
    "ForCausalLM",
    "LMHeadModel",
    "ModelWithLMHead",
    "ForConditionalGeneration",
    "ForMaskedLM",
    "Model",
)


@dataclass
class Model:
    target: Target
    project: Project
    interp: Interp
    roles: RoleBook
    modeling: SourceFile
    config: ConfigObj
    config_cls: ClassInfo | None
    config_prefix: str  # "text_config." when the decoder reads a nested config
    entry_cls: ClassInfo
    entry: ModuleRec
    model_type: str | None
    stack_path: str | None = None  # "model.layers"
    stack_owner: ModuleRec | None = None  # the backbone (owns embeddings, layers, final norm)
    stack_owner_path: str = ""
    layers: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def cite_config(self, key: str) -> str:
        return f"config:{self.config_prefix}{key}"


class NoModelClass(CodegenError):
    """The file defines no model class (e.g. a registry module)."""


def model_classes(project: Project, sf: SourceFile) -> list[ClassInfo]:
    """Classes deriving from transformers' PreTrained* model bases."""
    out = []
    for cls in sf.classes.values():
        bases = [b.rsplit(".", 1)[-1] for b in project.external_bases(cls)]
        if any(
            b.startswith(("PreTrained", "Pretrained")) and not b.endswith("Config") for b in bases
        ):
            out.append(cls)
    return out


def config_class_of(project: Project, cls: ClassInfo) -> ClassInfo | None:
    """The config class a model class is built from (`config: XConfig` / `config_class = X`)."""
    found = project.find_annotation(cls, "config")
    candidates = []
    if found is not None:
        candidates.append((found[0], found[0].sf.code(found[1])))
    attr = project.find_class_attr(cls, "config_class")
    if attr is not None:
        candidates.append((attr[0], attr[0].sf.code(attr[1])))
    init = project.find_method(cls, "__init__")
    if init is not None:
        owner, fn = init
        params = list(fn.params.params)
        if len(params) > 1 and params[1].annotation is not None:
            candidates.append((owner, owner.sf.code(params[1].annotation.annotation)))
    for owner, code in candidates:
        name = code.strip("\"'").split("|")[0].strip()
        if not name.isidentifier():
            continue
        resolved = project.resolve_class(owner.sf, name)
        if resolved is not None:
            return resolved
    return None


def _entry_score(name: str) -> int:
    for i, suffix in enumerate(_ENTRY_SUFFIXES):
        if name.endswith(suffix):
            return len(_ENTRY_SUFFIXES) - i
    return 0


def _auto_map_classes(auto_map, sf: SourceFile) -> list[str]:
    """The classes config.json's `auto_map` names in this modeling file, the causal LM first
    (`"AutoModelForCausalLM": "modeling_x.XGenerator"`, also `"repo--modeling_x.X"`)."""
    if not isinstance(auto_map, dict):
        return []
    stem = os.path.splitext(os.path.basename(sf.path))[0]
    out = []
    for key in _AUTO_MAP_KEYS:
        ref = auto_map.get(key)
        ref = ref[0] if isinstance(ref, list | tuple) and ref else ref
        if isinstance(ref, str):
            module, _, name = ref.split("--")[-1].rpartition(".")
            if module == stem:
                out.append(name)
    return out


def choose_entry(
    project: Project,
    sf: SourceFile,
    config_class_name: str | None,
    architectures,
    auto_map=None,
) -> ClassInfo:
    classes = model_classes(project, sf)
    for arch in _auto_map_classes(auto_map, sf) + (
        architectures if isinstance(architectures, list) else []
    ):
        if isinstance(arch, str) and arch in sf.classes:
            return sf.classes[arch]
    if not classes:
        raise NoModelClass("no PreTrainedModel subclass found", path=sf.path)
    exported = set(sf.all_names)
    order = {name: i for i, name in enumerate(sf.classes)}

    def key(cls: ClassInfo):
        cfg = config_class_of(project, cls)
        matches = (
            config_class_name is not None and cfg is not None and cfg.name == config_class_name
        )
        abstract = cls.name.endswith(("PreTrainedModel", "PretrainedModel"))
        return (
            0 if abstract else 1,
            1 if matches else 0,
            _entry_score(cls.name),
            1 if (not exported or cls.name in exported) else 0,
            -order[cls.name],
        )

    best = max(classes, key=key)
    if _entry_score(best.name) == 0:
        # no conventional name: an exported concrete class (not the abstract base)
        concrete = [
            c for c in classes if not c.name.endswith(("PreTrainedModel", "PretrainedModel"))
        ]
        concrete = [c for c in concrete if not exported or c.name in exported] or concrete
        if not concrete:
            raise NoModelClass("no model class found", path=sf.path)
        best = concrete[-1]
    return best


def walk_tree(rec, path: str = "", seen: set | None = None):
    """(path, value) for every module/param/list reachable from `rec`, parents first."""
    seen = set() if seen is None else seen
    if id(rec) in seen:
        return
    seen.add(id(rec))
    yield path, rec
    if isinstance(rec, ModuleRec):
        for name, child in rec.children():
            yield from walk_tree(child, f"{path}.{name}" if path else name, seen)
    elif isinstance(rec, ModuleListRec):
        for i, item in enumerate(rec.items):
            key = rec.keys[i] if rec.keys is not None else str(i)
            yield from walk_tree(item, f"{path}.{key}" if path else key, seen)


def load_model(target: Target, project: Project | None = None) -> Model:
    project = project or Project()
    sf = project.load(target.modeling_path)
    interp = Interp(project)
    builder = ConfigBuilder(interp)
    values = dict(target.config_values or {})

    config_cls = None
    if target.config_class_name and target.configuration_path:
        csf = project.try_load(target.configuration_path)
        if csf is not None:
            config_cls = csf.classes.get(target.config_class_name)
    entry = choose_entry(
        project,
        sf,
        config_cls.name if config_cls is not None else target.config_class_name,
        values.get("architectures"),
        values.get("auto_map"),
    )
    entry_cfg_cls = config_class_of(project, entry)
    # a model_type running another folder's modeling file (internlm3 -> LlamaForCausalLM) is
    # configured by its own class, as transformers' auto mapping builds it
    runs_another_folders_code = (
        config_cls is not None
        and target.configuration_path is not None
        and os.path.dirname(target.configuration_path) != os.path.dirname(target.modeling_path)
    )
    if entry_cfg_cls is not None and not runs_another_folders_code:
        config_cls = entry_cfg_cls
    if config_cls is None and target.configuration_path:
        csf = project.try_load(target.configuration_path)
        if csf is not None:
            configs = [c for c in csf.classes.values() if interp.is_config_class(c)]
            if len(configs) == 1:
                config_cls = configs[0]
    model_type = target.model_type
    class_model_type = None
    if config_cls is not None:
        found = project.find_class_attr(config_cls, "model_type")
        if found is not None:
            try:
                class_model_type = interp.class_attr_value(found[0], found[1])
            except Unknown:
                class_model_type = None
    prefix = ""
    if values and isinstance(class_model_type, str):
        values, prefix = text_config_values(values, class_model_type)
    if model_type is None or (target.config_values is None and isinstance(class_model_type, str)):
        model_type = class_model_type if isinstance(class_model_type, str) else model_type
    try:
        config = builder.build(config_cls, values)
    except BudgetExceeded:
        config = builder.build(None, values)
    config.prefix = prefix
    site = Site(entry.sf, entry.node)
    try:
        rec = interp.instantiate(entry, [config], {}, site)
    except BudgetExceeded as err:
        raise CodegenError(
            f"static instantiation of {entry.name} exceeded its budget", path=sf.path
        ) from err
    read_delegates(project, rec)
    roles = RoleBook(project)
    model = Model(
        target=target,
        project=project,
        interp=interp,
        roles=roles,
        modeling=sf,
        config=config,
        config_cls=config_cls,
        config_prefix=prefix,
        entry_cls=entry,
        entry=rec,
        model_type=model_type,
    )
    _find_stack(model)
    if model.stack_owner is None or not _has_embedding(model, model.stack_owner):
        # the decoder is an `AutoModel.from_config(...)` sub-model: follow it (text first)
        _expand_auto_models(model)
        _find_stack(model)
    return model


def _has_embedding(model: Model, owner: ModuleRec) -> bool:
    return any(
        isinstance(v, ModuleRec) and model.roles.role(v) == EMBEDDING for _, v in owner.children()
    )


def _expand_auto_models(model: Model) -> None:
    """`AutoModel.from_config(config.text_config)`: instantiate the sub-model statically from
    the installed transformers file of the sub-config's model_type."""
    pending = []
    for _, rec in list(walk_tree(model.entry)):
        if not isinstance(rec, ModuleRec) or rec.cls is None:
            continue
        for name, child in list(rec.attrs.items()):
            if isinstance(child, ModuleRec) and (child.external or "").startswith("AutoModel"):
                sub = child.args[0] if child.args else child.kwargs.get("config")
                prefix = getattr(sub, "prefix", "") or ""
                text_first = (
                    0 if ("text" in prefix or "language" in prefix or "llm" in prefix) else 1
                )
                pending.append((text_first, rec, name))
    for _, rec, attr_name in sorted(pending, key=lambda p: p[0]):
        if model.stack_owner is not None and _has_embedding(model, model.stack_owner):
            break
        for name, child in [(attr_name, rec.attrs[attr_name])]:
            if not (
                isinstance(child, ModuleRec) and (child.external or "").startswith("AutoModel")
            ):
                continue
            sub = child.args[0] if child.args else child.kwargs.get("config")
            if not isinstance(sub, ConfigObj) or sub.cls is None:
                continue
            found = model.project.find_class_attr(sub.cls, "model_type")
            try:
                mt = model.interp.class_attr_value(found[0], found[1]) if found else None
            except Unknown:
                mt = None
            if not isinstance(mt, str):
                continue
            try:
                path, _, _ = model_type_files(mt)
            except CodegenError:
                continue
            other = model.project.try_load(path)
            if other is None:
                continue
            candidates = [
                c
                for c in model_classes(model.project, other)
                if c.name.endswith("Model")
                and not c.name.endswith(("PreTrainedModel", "PretrainedModel"))
                and (cc := config_class_of(model.project, c)) is not None
                and cc is sub.cls
            ]
            if not candidates:
                continue
            cls = candidates[0]
            try:
                new = model.interp.instantiate(cls, [sub], {}, Site(cls.sf, cls.node))
            except BudgetExceeded:
                continue
            read_delegates(model.project, new)
            new.site = child.site
            rec.attrs[name] = new
            _find_stack(model)
            if os.path.abspath(path) != os.path.abspath(model.modeling.path):
                key = sub.prefix.rstrip(".") or "sub-config"
                model.notes.append(
                    f"{name} is AutoModel.from_config(config.{key}); "
                    f"followed statically into {os.path.basename(path)}"
                )


def _find_stack(model: Model) -> None:
    roles = model.roles
    best = None
    for path, value in walk_tree(model.entry):
        if not isinstance(value, ModuleListRec) or not value.items:
            continue
        items = [v for v in value.items if isinstance(v, ModuleRec)]
        if not items:
            continue
        layerish = [v for v in items if roles.role(v) == LAYER]
        if not layerish:
            continue
        owner_path = path.rsplit(".", 1)[0] if "." in path else ""
        owner = get_path(model.entry, owner_path)
        has_embedding = isinstance(owner, ModuleRec) and any(
            isinstance(v, ModuleRec) and roles.role(v) == EMBEDDING for _, v in owner.children()
        )
        score = (1 if has_embedding else 0, len(layerish))
        if best is None or score > best[0]:
            best = (score, path, owner, owner_path, items)
    if best is None:
        return
    _, path, owner, owner_path, items = best
    model.stack_path = path
    model.stack_owner = owner if isinstance(owner, ModuleRec) else None
    model.stack_owner_path = owner_path
    model.layers = items


def get_path(root, path: str):
    node = root
    if not path:
        return node
    for part in path.split("."):
        if isinstance(node, ModuleRec):
            node = node.attrs.get(part)
        elif isinstance(node, ModuleListRec):
            try:
                node = (
                    node.items[int(part)]
                    if node.keys is None
                    else node.items[node.keys.index(part)]
                )
            except (ValueError, IndexError):
                return None
        else:
            return None
    return node


# roles read from a plain module list of the layer's own (LongCat-Flash's self_attn, mlps
# and the norms beside them, one per attention sublayer); deeper lists and ModuleDicts
# (X-MOD's per-language adapters) give their mixers only
LISTED_ROLES = (ATTENTION, MIXER, MLP, MOE, "norm")


def layer_slots(model: Model, layer: ModuleRec) -> dict[str, list[tuple[str, ModuleRec]]]:
    """The direct (or one-level nested) children of a layer grouped by role."""
    out: dict[str, list[tuple[str, ModuleRec]]] = {}
    roles = model.roles

    def visit(rec: ModuleRec, prefix: str, depth: int) -> None:
        for name, child in rec.children():
            if isinstance(child, ModuleListRec):
                # the layer's own lists of parts; a mixer in a list one level down too
                listed = LISTED_ROLES if depth == 0 and child.keys is None else (ATTENTION, MIXER)
                for i, item in enumerate(child.items):
                    if isinstance(item, ModuleRec) and roles.role(item) in listed:
                        out.setdefault(roles.role(item), []).append((f"{prefix}{name}.{i}", item))
                continue
            if isinstance(child, ModuleRec):
                role = roles.role(child)
                path = f"{prefix}{name}"
                if role in (ATTENTION, MIXER, MLP, MOE) or role == "norm":
                    out.setdefault(role, []).append((path, child))
                elif depth < 1 and role in ("container", "other"):
                    visit(child, path + ".", depth + 1)

    visit(layer, "", 0)
    return out


def param_leaves(rec: ModuleRec) -> list[tuple[str, ParamRec | None]]:
    """(name, ParamRec|None) of the tensors a module record owns directly."""
    out: list[tuple[str, ParamRec | None]] = []
    kind = rec.kind
    if rec.cls is None or rec.ext_base is not None:
        if kind in ("Linear", "Conv1D", "Conv1d", "Conv2d", "Conv3d"):
            out.append(("weight", None))
            if _bias_flag(rec) is not False and not dropped(rec, "bias"):
                out.append(("bias", None))
        elif kind in ("Embedding", "EmbeddingBag"):
            out.append(("weight", None))
        elif kind in ("LayerNorm", "GroupNorm"):
            if rec.kwargs.get("elementwise_affine", True) is not False:
                out.append(("weight", None))
                if rec.kwargs.get("bias", True) is not False and not dropped(rec, "bias"):
                    out.append(("bias", None))
        elif kind == "RMSNorm":
            if rec.kwargs.get("elementwise_affine", True) is not False:
                out.append(("weight", None))
    for name, value in rec.attrs.items():
        if isinstance(value, ParamRec):
            if value.kind == "parameter" or value.persistent:
                out.append((name, value))
    if rec.via:  # held through a wrapper that only delegates to it: `q_proj.linear.weight`
        path = ".".join(rec.via)
        out = [(f"{path}.{name}", value) for name, value in out]
    return out


def dropped(rec: ModuleRec, name: str) -> bool:
    """Whether the tensor `name` the module built is set to None after it (`self.norm_1.bias
    = None` in the owner's __init__, mpt): it is neither a parameter nor in the checkpoint."""
    return name in rec.attrs and rec.attrs[name] is None


def _bias_flag(rec: ModuleRec):
    """A Linear's `bias` argument: True/False, or None when unknown."""
    if "bias" in rec.kwargs:
        value = rec.kwargs["bias"]
        return value if isinstance(value, bool) else None
    if len(rec.args) >= 3 and rec.kind == "Linear":
        value = rec.args[2]
        return value if isinstance(value, bool) else None
    return True  # torch default


def linear_bias(rec: ModuleRec):
    return _bias_flag(rec)
