"""Make `from_hf_config` read fields the target's config class has, and FIXED_SETTINGS agree."""

from __future__ import annotations

import ast
import json
import re

import libcst as cst
import libcst.matchers as m

from codegen.analyze.config import LEGACY_NAMES
from codegen.analyze.features import UNKNOWN
from codegen.transforms._rope_edits import hf_source
from codegen.transforms.base import Transform
from codegen.transforms.edits import EditDict, EditError, code_of, expression, run

# FIXED_SETTINGS entries that follow the target config (the transforms realised the
# feature from the same config value); others, like hidden_act, must already agree.
_ADOPTED = ("attention_bias", "mlp_bias")


class AlignConfigFields(Transform):
    """A config read the target lacks becomes its alias (`rules/names.py`, then the legacy
    names remote code uses), a derivation from the fields it does have (`multi_query`,
    `kv_channels`, `rotary_dim`, top-level RoPE fields) or its fallback; FIXED_SETTINGS drops
    fields the target config does not have and adopts its biases."""

    name = "align_config_fields"

    def apply(self, package, features=None, *, fields: list[str], config: dict) -> None:
        from codegen.scaffold.table import load_names

        resolver = _Resolver(load_names(), set(fields), features, config)
        module = package.files["args.py"]
        replacements = {
            read: expr
            for read in sorted(_config_reads(module))
            if (expr := resolver.expression(read)) is not None
        }
        # an optional read's default already says what a missing field means: only a field
        # the config stores under another name, or derives from one it has, replaces it
        optional = {
            read: expr
            for read in sorted(_optional_reads(module) - set(replacements))
            if (expr := resolver.optional(read)) is not None
        }
        if replacements or optional:
            package.edit("args.py", _Replace(replacements, optional))
        # `for name in ("a", "b"): getattr(hf_config, name)`: each named field is a read too
        package.edit("args.py", _NamedReads(resolver))
        if "FIXED_SETTINGS" in package.files["args.py"].code:
            run(
                package,
                "args.py",
                EditDict("FIXED_SETTINGS", _settings_rewrite(set(fields), config, resolver)),
            )


# Features set only where the code holds the value itself, no config field (norm.eps)
_CODE_CONSTANTS = ("norm.eps",)


class _Resolver:
    """What a read of config field `read` becomes for a config holding `available`."""

    def __init__(self, names, available: set[str], features, config: dict | None = None):
        self.names, self.available, self.features = names, available, features
        self.config = config or {}
        self._mentioned = None  # attribute names and strings of the HF source, when needed

    def expression(self, read: str, seen: frozenset = frozenset()) -> cst.BaseExpression | None:
        """`hf_config.<read>` -> an alias read, a derivation from fields the config has, a
        legacy name, a value the analysis found in the code (only where the config holds the
        value under no name), or the fallback (None: leave it)."""
        read_instead = self._field_read(read)
        if read_instead is not None:
            return read_instead
        if read in self.available or read in seen:
            return None
        found = (
            self._code_constant(read)
            or self._alias(self.names.CONFIG_ALIASES.get(read, ()))
            or self._sub_config(read)
            or self._derived(read, seen)
            or self._alias(LEGACY_NAMES.get(read, ()))
            or self._multiple(read)
            or self._known(read)
        )
        if found is None and read in self.names.CONFIG_FALLBACKS:
            found = self._resolved(self.names.CONFIG_FALLBACKS[read], seen | {read})
        if found is not None and not seen and self._hf_reads_optional(read):
            # the config class lacks the field, but HF reads it where a config.json carries
            # it (Exaone4's `getattr(config, "head_dim", hidden // heads)`): so does the package
            return expression(f'getattr(hf_config, "{read}", None) or ({code_of(found)})')
        return found

    def optional(self, read: str) -> cst.BaseExpression | None:
        """`getattr(hf_config, "<read>", default)` -> the same read of an alias, or a
        derivation; the default already says what a missing field means."""
        if read in self.available:
            return None
        aliases = (*self.names.CONFIG_ALIASES.get(read, ()), *LEGACY_NAMES.get(read, ()))
        alias = next((a for a in aliases if a in self.available), None)
        if alias is not None:
            return ("rename", alias)
        if self._hf_reads_optional(read):
            # HF honours the field where a config.json carries it (Exaone4's
            # `getattr(config, "head_dim", hidden // heads)`): so does the package's read
            return None
        return self._derived(read, frozenset())

    def _hf_reads_optional(self, read: str) -> bool:
        """Does the HF modeling source read config field `read` where the config may lack it
        (`getattr(config, "<read>", ...)`, `getattr(self.config, ...)`)? False without it."""
        try:
            source = hf_source(self.features)
        except EditError:
            return False
        pattern = rf"getattr\(\s*(?:self\.)?config\s*,\s*[\"']{re.escape(read)}[\"']"
        return re.search(pattern, source) is not None

    def renamed(self, read: str) -> str | None:
        """The name the config holds `read` under (itself, the field the analysis saw the
        code read for it, or an alias), or None."""
        if read in self.available:
            return read
        seen = self.seen_field(read)
        if seen is not None:
            return seen
        aliases = (*self.names.CONFIG_ALIASES.get(read, ()), *LEGACY_NAMES.get(read, ()))
        return next((a for a in aliases if a in self.available), None)

    def seen_field(self, read: str) -> str | None:
        """The config field the analysis saw the code read for `read`
        (`CONFIG_FIELD_FROM_FEATURES`: falcon's activation is `get_activation(config.activation)`),
        when the config has it; else None."""
        if read in self.names.CONFIG_FIELD_WHEN_MISSING and read in self.available:
            return None  # one of several sizes: the config's own field is the package's
        path = self.names.CONFIG_FIELD_FROM_FEATURES.get(read)
        field = _feature_value(self.features, path)
        return field if isinstance(field, str) and field in self.available else None

    def _field_read(self, read: str) -> cst.BaseExpression | None:
        """The config field the analysis saw the code read for `read`, when the config has
        it under another name (cohere2_moe's norms read layer_norm_eps; its rms_norm_eps is
        None)."""
        field = self.seen_field(read)
        return expression(f"hf_config.{field}") if field is not None and field != read else None

    def _sub_config(self, read: str) -> cst.BaseExpression | None:
        """A field the config holds in one sub-config (`attn_config.clip_qkv`, listed so in
        `available`), under its name or else an alias (DBRX's `ffn_config.moe_num_experts`):
        read there. Ambiguous (two sub-configs hold it): left alone."""
        for name in (read, *self.names.CONFIG_ALIASES.get(read, ())):
            held = sorted(f for f in self.available if f.partition(".")[2] == name)
            if held:
                return expression(f"hf_config.{held[0]}") if len(held) == 1 else None
        return None

    def _alias(self, aliases) -> cst.BaseExpression | None:
        alias = next((a for a in aliases if a in self.available), None)
        return None if alias is None else expression(f"hf_config.{alias}")

    def _code_constant(self, read: str) -> cst.BaseExpression | None:
        """A value the code fixes although the config has a field of that name (BioGPT's
        nn.LayerNorm at 1e-5 beside an unread layer_norm_eps=1e-12): the code's wins."""
        path = self.names.CONFIG_FROM_FEATURES.get(read)
        return self._known(read) if path in _CODE_CONSTANTS else None

    def _multiple(self, read: str) -> cst.BaseExpression | None:
        """A size the code fixes as a whole multiple of a config field the config has (bloom's
        FFN: `4 * hidden_size`), read where the config holds the size under no name:
        `k * hf_config.<field>`, k from the value the analysis found over the field's."""
        path, field = self.names.CONFIG_MULTIPLES.get(read, (None, None))
        size = _feature_value(self.features, path)
        if field not in self.available or not isinstance(size, int) or isinstance(size, bool):
            return None
        # the config's values may hold the field under its stored name (openai-gpt: n_embd)
        names = (field, *self.names.CONFIG_ALIASES.get(field, ()), *LEGACY_NAMES.get(field, ()))
        unit = next((self.config[n] for n in names if n in self.config), None)
        if not isinstance(unit, int) or unit <= 0 or size % unit:
            return None
        return expression(f"{size // unit} * hf_config.{field}")

    def _known(self, read: str) -> cst.BaseExpression | None:
        known = _feature_value(self.features, self.names.CONFIG_FROM_FEATURES.get(read))
        return None if known is None else expression(repr(known))

    def _derived(self, read: str, seen: frozenset) -> cst.BaseExpression | None:
        for needs, text in self.names.CONFIG_DERIVATIONS.get(read, ()):
            if set(needs) <= self.available:
                if needs and read in self.names.CONFIG_MULTIPLES and not self._hf_reads(needs):
                    # a size the HF code fixes itself (MPT's MLP: 4 * hidden_size) although
                    # the config has a field that would derive it (expansion_ratio, unread)
                    continue
                return self._resolved(text, seen | {read})
        return None

    def _hf_reads(self, names) -> bool:
        """Does the HF modeling source read every one of `names` (as `x.<name>` or a
        `"<name>"` string)? True when the source is not at hand."""
        if self._mentioned is None:
            self._mentioned = _mentioned_names(self.features)
        return self._mentioned is True or set(names) <= self._mentioned

    def _resolved(self, text: str, seen: frozenset) -> cst.BaseExpression:
        derived = expression(text)
        inner = {r: e for r in _config_reads(derived) if (e := self.expression(r, seen))}
        return derived.visit(_Replace(inner)) if inner else derived


def _mentioned_names(features):
    """Attribute names and string constants of the HF modeling source; True when there is
    no source to read."""
    from codegen.transforms._rope_edits import hf_source

    try:
        module = cst.parse_module(hf_source(features))
    except Exception:  # no source beside the features, or one libcst cannot parse
        return True
    found = {node.attr.value for node in m.findall(module, m.Attribute())}
    strings = m.findall(module, m.SimpleString())
    return found | {node.evaluated_value for node in strings if isinstance(node, cst.SimpleString)}


def _feature_value(features, path: str | None):
    """A plain bool/number/name the analysis found for `path`, else None ("unknown" too)."""
    if features is None or path is None:
        return None
    value = features.get(path)
    if isinstance(value, str):
        return None if value == UNKNOWN else value
    return value if isinstance(value, bool | int | float) else None


def _settings_rewrite(available: set[str], config: dict, resolver: _Resolver | None = None):
    def rewrite(key: str, value: str):
        field = json.loads(key)
        if field not in available:
            seen = resolver.seen_field(field) if resolver is not None else None
            if seen is not None and seen in config:
                # the field the analysed code looked the value up by (openai-gpt's
                # `ACT_FNS[config.afn]`): pinned at the config's own value, the key that chose
                # what the package computes (afn="gelu" names gelu_new there)
                return [(json.dumps(seen), _setting_literal(config[seen]))]
            # held under another name with the pinned value (an alias, JetMoE's
            # activation_function for hidden_act): pinned there, so another setting is
            # refused, not run as silu
            alias = resolver.renamed(field) if resolver is not None else None
            if alias is not None and alias in config and _literal(value) == config[alias]:
                return [(json.dumps(alias), value)]
            return []
        if field in _ADOPTED and field in config:
            return [(key, repr(config[field]))]
        return [(key, value)]

    return rewrite


def _setting_literal(value) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def _literal(value: str):
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return None


_HF_READ = m.Attribute(value=m.Name("hf_config"))
# getattr(hf_config, "head_dim", None): a read the config may answer, or not
_OPTIONAL_READ = m.Call(
    func=m.Name("getattr"),
    args=[m.Arg(m.Name("hf_config")), m.Arg(m.SimpleString()), m.ZeroOrMore()],
)


# expressions an operator can take without parentheses
_ATOM = (
    m.Name() | m.Attribute() | m.Call() | m.Subscript() | m.Integer() | m.Float() | m.SimpleString()
)


def _config_reads(node: cst.CSTNode) -> set[str]:
    """Fields read as `hf_config.<field>`."""
    return {found.attr.value for found in m.findall(node, _HF_READ)}


def _optional_reads(node: cst.CSTNode) -> set[str]:
    """Fields read as `getattr(hf_config, "<field>", default)`."""
    return {found.args[1].value.evaluated_value for found in m.findall(node, _OPTIONAL_READ)}


class _NamedReads(cst.CSTTransformer):
    """A loop over field names that reads each with `getattr(hf_config, name)`: a name the
    config has under an alias is read under it; one it lacks is dropped (a check of a field
    the config does not have has nothing to check); a loop left with no name goes."""

    def __init__(self, resolver: _Resolver):
        super().__init__()
        self.resolver = resolver

    def leave_For(self, original, updated):
        names = updated.iter
        if not (
            m.matches(updated.target, m.Name())
            and m.matches(names, m.Tuple() | m.List())
            and all(m.matches(e.value, m.SimpleString()) for e in names.elements)
        ):
            return updated
        read = m.Call(
            func=m.Name("getattr"),
            args=[m.Arg(m.Name("hf_config")), m.Arg(m.Name(updated.target.value))],
        )
        if not m.findall(updated.body, read):
            return updated
        kept = []
        for element in names.elements:
            field = element.value.evaluated_value
            renamed = self.resolver.renamed(field)
            if renamed is not None:
                kept.append(element.with_changes(value=cst.SimpleString(f'"{renamed}"')))
        if not kept:
            return cst.RemoveFromParent()
        if len(kept) == len(names.elements):
            return updated.with_changes(iter=names.with_changes(elements=kept))
        last = kept[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return updated.with_changes(iter=names.with_changes(elements=[*kept[:-1], last]))


class _Replace(cst.CSTTransformer):
    """`hf_config.<read>` -> its replacement; `getattr(hf_config, "<read>", d)` -> the
    replacement of an optional read."""

    def __init__(
        self,
        replacements: dict[str, cst.BaseExpression],
        optional: dict[str, cst.BaseExpression] | None = None,
    ):
        super().__init__()
        self.replacements, self.optional = replacements, optional or {}

        self.operands: set[cst.CSTNode] = set()  # reads an operator binds to

    def visit_BinaryOperation(self, node):
        self.operands.update((node.left, node.right))

    def visit_BooleanOperation(self, node):
        self.operands.update((node.left, node.right))

    def visit_UnaryOperation(self, node):
        self.operands.add(node.expression)

    def visit_Comparison(self, node):
        self.operands.update((node.left, *(target.comparator for target in node.comparisons)))

    def leave_Attribute(self, original, updated):
        if not (m.matches(updated, _HF_READ) and updated.attr.value in self.replacements):
            return updated
        new = self.replacements[updated.attr.value]
        if original in self.operands and not m.matches(new, _ATOM):
            return new.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
        return new

    def leave_Call(self, original, updated):
        if not m.matches(original, _OPTIONAL_READ):
            return updated
        new = self.optional.get(original.args[1].value.evaluated_value)
        if isinstance(new, tuple):  # ("rename", alias): the same optional read of the alias
            args = [*original.args]
            args[1] = args[1].with_changes(value=cst.SimpleString(f'"{new[1]}"'))
            return original.with_changes(args=args)
        return updated if new is None else new
