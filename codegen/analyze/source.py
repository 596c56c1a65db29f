"""Reading Python source statically: parse once, index classes/functions/imports, cite lines.

Nothing here imports or executes the files it reads. `Project` resolves names across files the
way Python would (`from ..llama.modeling_llama import LlamaAttention` is followed into the
installed transformers tree) but only by reading text.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache

import libcst as cst
from libcst._nodes.internal import CodegenState  # the base of PositionProvider's state

from codegen.analyze.trusted_parse import parse_module
from codegen.analyze.walk import children
from codegen.errors import CodegenError


@lru_cache(maxsize=1)
def transformers_dir() -> str | None:
    """The installed transformers package directory, found without importing it."""
    try:
        spec = importlib.util.find_spec("transformers")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def dotted(node: cst.BaseExpression | None) -> str | None:
    """`a.b.c` for a Name/Attribute chain, else None."""
    parts: list[str] = []
    while isinstance(node, cst.Attribute):
        parts.append(node.attr.value)
        node = node.value
    if isinstance(node, cst.Name):
        parts.append(node.value)
        return ".".join(reversed(parts))
    return None


@dataclass(eq=False)
class ClassInfo:
    """One class definition: its bases, methods and class-level assignments."""

    name: str
    sf: SourceFile
    node: cst.ClassDef
    bases: list[str]
    methods: dict[str, cst.FunctionDef]
    class_attrs: dict[str, cst.BaseExpression]
    annotations: dict[str, cst.BaseExpression]
    decorators: list[str]

    @property
    def line(self) -> int:
        return self.sf.line(self.node, self.node)

    def cite(self, node: cst.CSTNode | None = None) -> str:
        node = node if node is not None else self.node
        method = None
        for fn in self.methods.values():  # a class attribute or a node of a method?
            if node is fn:
                method = fn
        return self.sf.cite(node, self.node, method)

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<class {self.name} in {self.sf.name}>"


@dataclass(eq=False)
class SourceFile:
    """A parsed module with positions and a name index."""

    path: str
    module: cst.Module
    text: str = field(repr=False)
    positions: dict | None = field(default=None, repr=False)  # node -> line, filled lazily
    _scoped: set = field(default_factory=set, repr=False)
    _full: bool = False
    _defs: dict | None = field(default=None, repr=False)  # see `_def_index`
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    functions: dict[str, cst.FunctionDef] = field(default_factory=dict)
    assigns: dict[str, cst.BaseExpression] = field(default_factory=dict)
    # local name -> (module spec, imported name or None for `import x`)
    imports: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    all_names: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    def __repr__(self) -> str:
        return f"<source {self.name}>"

    def line(self, node: cst.CSTNode, scope=None, method=None) -> int:
        """1-based line of `node`, resolved lazily and as narrowly as possible: a class or
        function header by text search, a node inside a method by positions of that method
        alone, else of its top-level class/function (`scope`), else of the whole module."""
        if self.positions is None:
            self.positions = {}
        pos = self.positions.get(node)
        if pos is not None:
            return pos
        if isinstance(node, cst.ClassDef | cst.FunctionDef) and (scope is None or node is scope):
            found = self._def_line(node)
            if found is not None:
                self.positions[node] = found
                return found
        if method is not None and scope is not None and id(method) not in self._scoped:
            anchor = self.line(scope, None) if isinstance(scope, cst.ClassDef) else None
            if anchor:
                self._resolve(method, self._def_line(method, after=anchor))
                pos = self.positions.get(node)
                if pos is not None:
                    return pos
        if scope is not None and id(scope) not in self._scoped:
            self._resolve(scope, self._def_line(scope))
            pos = self.positions.get(node)
            if pos is not None:
                return pos
        if scope is None and isinstance(node, cst.FunctionDef):
            # a method cited without its class (its name is defined more than once): the
            # positions of that class, not of the whole module
            owner = next(
                (
                    c.node
                    for c in self.classes.values()
                    if any(fn is node for fn in c.methods.values())
                ),
                None,
            )
            if owner is not None:
                return self.line(node, owner)
        if scope is None and not self._full:
            # a node cited without its scope: the positions of the method (or top-level
            # class/function) holding it, found by a walk (cheaper than a whole-file pass)
            owner, inner = self._enclosing(node)
            if owner is not None:
                return self.line(node, owner, inner)
        if not self._full:
            self._resolve_all()
        return self.positions.get(node, 0)

    def _enclosing(self, node: cst.CSTNode) -> tuple:
        """(top-level class or function holding `node`, its method holding it or None)."""
        for stmt in self.module.body:
            if isinstance(stmt, cst.ClassDef):
                for inner in stmt.body.body:
                    if isinstance(inner, cst.FunctionDef) and _contains(inner, node):
                        return stmt, inner
                if _contains(stmt, node):
                    return stmt, None
            elif isinstance(stmt, cst.FunctionDef) and _contains(stmt, node):
                return stmt, None
        return None, None

    def _resolve(self, scope: cst.CSTNode, anchor: int | None) -> None:
        """Positions of every node under one class/function, offset to file lines."""
        self._scoped.add(id(scope))
        if anchor is None or not isinstance(scope, cst.ClassDef | cst.FunctionDef):
            return
        found = _positions(cst.Module(body=[scope]))
        name_pos = found.get(scope.name)
        if name_pos is None:
            return
        offset = anchor - name_pos
        for node, line in found.items():
            self.positions.setdefault(node, line + offset)

    def _def_line(self, scope, after: int = 0) -> int | None:
        """Line of `class Name` / `def name` in the text (the keyword line). With `after`, the
        first match after that line (a method of the class starting there); otherwise the
        unique (or only top-level) definition."""
        keyword = "class" if isinstance(scope, cst.ClassDef) else "def"
        matches = self._def_index().get((keyword, scope.name.value), ())
        if after:
            return next((line for line, _ in matches if line >= after), None)
        if not matches:
            return None
        if len(matches) > 1:
            top = [m for m in matches if m[1]]
            if len(top) != 1:
                return None  # ambiguous (redefinition): fall back to full positions
            matches = top
        return matches[0][0]

    def _def_index(self) -> dict:
        """(keyword, name) -> [(line, top level)] of every `class`/`def` line, in order: one
        pass over the text instead of one search of the whole file per definition cited."""
        if self._defs is None:
            self._defs = {}
            line, last = 1, 0
            for m in _DEF_LINE.finditer(self.text):
                line += self.text.count("\n", last, m.start())
                last = m.start()
                top = not m.group(0)[:1].isspace()
                self._defs.setdefault((m.group(1), m.group(2)), []).append((line, top))
        return self._defs

    def _resolve_all(self) -> None:
        self._full = True
        for node, line in _positions(self.module).items():
            self.positions.setdefault(node, line)

    def cite(self, node: cst.CSTNode, scope=None, method=None) -> str:
        return f"{self.name}:{self.line(node, scope, method)}"

    def code(self, node: cst.CSTNode) -> str:
        return self.module.code_for_node(node).strip()


def _contains(root: cst.CSTNode, node: cst.CSTNode) -> bool:
    stack = [root]
    while stack:
        current = stack.pop()
        if current is node:
            return True
        stack.extend(children(current))
    return False


def _positions(module: cst.Module) -> dict:
    """node -> 1-based start line of every node of `module`, as libcst's PositionProvider
    reports `start.line`: the provider's code generation, with a state that only counts line
    breaks. `MetadataWrapper.resolve` would first walk the whole tree through libcst's visit
    machinery (rebuilding every node), and the provider's own state builds a CodePosition
    per node and token and a generator per node; lines need neither
    (tests/analyze/test_source_lines.py checks the two agree)."""
    state = _LineState(default_indent=module.default_indent, default_newline=module.default_newline)
    module._codegen(state)
    return state.lines


_NEWLINE = re.compile(r"\r\n?|\n")  # a line break as the provider counts them


class _Record:
    """What `record_syntactic_position` returns: on exit the node gets its start line (the
    one of `start_node` when given, as with the provider)."""

    __slots__ = ("state",)

    def __init__(self, state: _LineState) -> None:
        self.state = state

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> bool:
        state = self.state
        node, start_node, line = state.pending.pop()
        state.lines[node] = state.lines[start_node] if start_node is not None else line
        return False


@dataclass
class _LineState(CodegenState):
    """libcst's code generation state, recording each node's start line instead of tokens.
    A node that records no syntactic position gets its whitespace-inclusive start, as with
    the provider."""

    lines: dict = field(default_factory=dict)
    line: int = 1
    stack: list = field(default_factory=list)
    pending: list = field(default_factory=list)
    record: _Record | None = None

    def __post_init__(self) -> None:
        self.record = _Record(self)

    def add_indent_tokens(self) -> None:
        pass  # indentation holds no line break

    def add_token(self, value: str) -> None:
        if "\n" in value or "\r" in value:
            self.line += len(_NEWLINE.findall(value))

    def before_codegen(self, node: cst.CSTNode) -> None:
        self.stack.append(self.line)

    def after_codegen(self, node: cst.CSTNode) -> None:
        line = self.stack.pop()
        if node not in self.lines:
            self.lines[node] = line

    def record_syntactic_position(self, node, *, start_node=None, end_node=None) -> _Record:
        self.pending.append((node, start_node, self.line))
        return self.record


# a `class`/`def` keyword line, as `SourceFile._def_line` looks them up
_DEF_LINE = re.compile(r"^[ \t]*(?:async[ \t]+)?(class|def)[ \t]+(\w+)", re.M)


def literal(node: cst.SimpleString | cst.Integer | cst.Float):
    """`node.evaluated_value`, computed once per literal text: libcst runs
    `ast.literal_eval` (a compile) at every call, thousands per analysis."""
    return _literal_eval(node.value)


@lru_cache(maxsize=8192)
def _literal_eval(text: str):
    return ast.literal_eval(text)


def constant(node: cst.BaseExpression):
    """(True, value) for a literal string/number/None/bool, else (False, None)."""
    if isinstance(node, cst.SimpleString | cst.ConcatenatedString):
        value = literal(node) if isinstance(node, cst.SimpleString) else node.evaluated_value
        return (isinstance(value, str), value)
    if isinstance(node, cst.Integer | cst.Float):
        return True, literal(node)
    if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus):
        ok, value = constant(node.expression)
        if ok and isinstance(value, int | float) and not isinstance(value, bool):
            return True, -value
    if isinstance(node, cst.Name) and node.value in ("None", "True", "False"):
        return True, {"None": None, "True": True, "False": False}[node.value]
    return False, None


def parameters(fn: cst.FunctionDef | cst.Lambda) -> list[cst.Param]:
    """`fn`'s named parameters, in order (not `*args`, `**kwargs`)."""
    return [*fn.params.posonly_params, *fn.params.params, *fn.params.kwonly_params]


def _decorator_name(dec: cst.Decorator) -> str:
    expr = dec.decorator
    if isinstance(expr, cst.Call):
        expr = expr.func
    return dotted(expr) or ""


# Larger files are refused before parsing: libcst's memory and time grow steeply with size
# (a 20 MB input took 250 s and 10 GB), and the largest installed modeling file is ~0.2 MB.
MAX_SOURCE_BYTES = 2 << 20


def parse_file(path: str, positions: bool = True) -> SourceFile:
    """Parse `path` with libcst; a syntax error or missing file becomes one CodegenError line.
    `positions=False` skips line numbers (for files that are read but never cited)."""
    try:
        size = os.path.getsize(path)
        if size > MAX_SOURCE_BYTES:
            raise CodegenError(
                f"{size / 2**20:.1f} MB is over the {MAX_SOURCE_BYTES >> 20} MB the analyzer "
                "reads (a modeling file is a few hundred kB); point it at the model's own "
                "modeling file",
                path=path,
            )
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise CodegenError("no such file", path=path) from None
    except (OSError, UnicodeDecodeError) as err:
        raise CodegenError(f"cannot read file ({err.__class__.__name__})", path=path) from None
    try:
        module = parse_module(text)  # see trusted_parse.py
    except cst.ParserSyntaxError as err:
        line, message = err.raw_line, str(err.message).splitlines()[0]
        try:  # the stdlib parser locates errors more precisely (it only parses, never runs)
            ast.parse(text, filename=path)
        except SyntaxError as precise:
            line, message = precise.lineno or line, precise.msg or message
        except (ValueError, RecursionError):
            pass
        raise CodegenError(f"syntax error: {message}", path=path, line=line) from None
    sf = SourceFile(path=path, module=module, text=text)
    if not positions:
        sf._full = True  # never cited: line numbers stay 0
    _index(sf)
    return sf


def _index(sf: SourceFile, body=None) -> None:
    for stmt in sf.module.body if body is None else body:
        if isinstance(stmt, cst.Try):
            # `try: from flash_attn import ... except ImportError: ...`: index the path that
            # runs on this machine (found by module lookup, nothing is imported).
            _index(sf, _try_path(stmt))
        elif isinstance(stmt, cst.ClassDef):
            sf.classes[stmt.name.value] = _class_info(sf, stmt)
        elif isinstance(stmt, cst.FunctionDef):
            sf.functions[stmt.name.value] = stmt
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                _index_small(sf, small)
        elif isinstance(stmt, cst.If) and _runs_else(stmt):
            # `if is_xlstm_available(): from xlstm import ... else: <own definitions>` with the
            # package missing here: the else branch is the code that runs
            _index(sf, list(stmt.orelse.body.body))
        elif isinstance(stmt, cst.If):
            # `if is_torch_available(): from x import y` and friends.
            for inner in stmt.body.body:
                if isinstance(inner, cst.SimpleStatementLine):
                    for small in inner.body:
                        if isinstance(small, cst.ImportFrom | cst.Import):
                            _index_small(sf, small)
                elif isinstance(inner, cst.ClassDef):
                    sf.classes.setdefault(inner.name.value, _class_info(sf, inner))
                elif isinstance(inner, cst.FunctionDef):
                    sf.functions.setdefault(inner.name.value, inner)


def _runs_else(stmt: cst.If) -> bool:
    """A module-level `if` with a plain `else` whose body imports an absolute module that
    cannot be found here."""
    if not isinstance(stmt.orelse, cst.Else):
        return False
    for inner in stmt.body.body:
        if not isinstance(inner, cst.SimpleStatementLine):
            continue
        for small in inner.body:
            if isinstance(small, cst.ImportFrom) and not small.relative and small.module:
                if not _findable(dotted(small.module) or ""):
                    return True
            elif isinstance(small, cst.Import):
                if any(not _findable(dotted(alias.name) or "") for alias in small.names):
                    return True
    return False


def _try_path(stmt: cst.Try) -> list:
    """The statements of a module-level `try` that run here: its body (and `else`) when every
    absolute module it imports can be found, else its first handler."""
    body = list(stmt.body.body)
    missing = False
    for inner in body:
        if not isinstance(inner, cst.SimpleStatementLine):
            continue
        for small in inner.body:
            if isinstance(small, cst.ImportFrom) and not small.relative and small.module:
                missing = missing or not _findable(dotted(small.module) or "")
            elif isinstance(small, cst.Import):
                missing = missing or any(
                    not _findable(dotted(alias.name) or "") for alias in small.names
                )
    if missing and stmt.handlers:
        return list(stmt.handlers[0].body.body)
    return body + (list(stmt.orelse.body.body) if stmt.orelse is not None else [])


def _findable(module: str) -> bool:
    top = module.split(".")[0]
    if not top:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _index_small(sf: SourceFile, small: cst.BaseSmallStatement) -> None:
    if isinstance(small, cst.Assign):
        for target in small.targets:
            if isinstance(target.target, cst.Name):
                sf.assigns[target.target.value] = small.value
                if target.target.value == "__all__" and isinstance(small.value, cst.List):
                    sf.all_names = [
                        el.value.evaluated_value
                        for el in small.value.elements
                        if isinstance(el.value, cst.SimpleString)
                    ]
    elif isinstance(small, cst.AnnAssign) and small.value is not None:
        if isinstance(small.target, cst.Name):
            sf.assigns[small.target.value] = small.value
    elif isinstance(small, cst.ImportFrom):
        mod = dotted(small.module) if small.module is not None else ""
        spec = "." * len(small.relative) + (mod or "")
        if isinstance(small.names, cst.ImportStar):
            return
        for alias in small.names:
            name = dotted(alias.name) or ""
            local = alias.asname.name.value if alias.asname else name
            if isinstance(local, str):
                sf.imports[local] = (spec, name)
    elif isinstance(small, cst.Import):
        for alias in small.names:
            name = dotted(alias.name) or ""
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                sf.imports[alias.asname.name.value] = (name, None)
            else:
                sf.imports[name.split(".")[0]] = (name.split(".")[0], None)


def _class_info(sf: SourceFile, node: cst.ClassDef) -> ClassInfo:
    methods: dict[str, cst.FunctionDef] = {}
    class_attrs: dict[str, cst.BaseExpression] = {}
    annotations: dict[str, cst.BaseExpression] = {}
    for stmt in node.body.body:
        if isinstance(stmt, cst.FunctionDef):
            setter = any(
                isinstance(d.decorator, cst.Attribute)
                and d.decorator.attr.value in ("setter", "deleter")
                for d in stmt.decorators
            )
            if not (setter and stmt.name.value in methods):  # keep the property getter
                methods[stmt.name.value] = stmt
        elif isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                if isinstance(small, cst.Assign):
                    for target in small.targets:
                        if isinstance(target.target, cst.Name):
                            class_attrs[target.target.value] = small.value
                elif isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name):
                    annotations[small.target.value] = small.annotation.annotation
                    if small.value is not None:
                        class_attrs[small.target.value] = small.value
    bases = [dotted(arg.value) or "" for arg in node.bases if arg.keyword is None]
    decorators = [_decorator_name(d) for d in node.decorators]
    return ClassInfo(
        name=node.name.value,
        sf=sf,
        node=node,
        bases=bases,
        methods=methods,
        class_attrs=class_attrs,
        annotations=annotations,
        decorators=decorators,
    )


_PARSED: dict[tuple, SourceFile] = {}
_PARSED_MAX = 12  # syntax trees are large; keep the few that multimodal models share


def _cached_parse(path: str, positions: bool) -> SourceFile:
    """Parsed files are immutable (line numbers fill in lazily), so one process shares them
    across analyses; a changed file (mtime/size) is parsed again."""
    try:
        st = os.stat(path)
        key = (path, st.st_mtime_ns, st.st_size, positions)
    except OSError:
        return parse_file(path, positions)
    sf = _PARSED.pop(key, None)
    if sf is None:
        sf = parse_file(path, positions)
    _PARSED[key] = sf  # most recently used last
    while len(_PARSED) > _PARSED_MAX:
        _PARSED.pop(next(iter(_PARSED)))
    return sf


def _is_model_module(spec: str) -> bool:
    last = spec.rsplit(".", 1)[-1]
    if not last.startswith(("modeling_", "configuration_")):
        return False
    if last in ("modeling_auto", "configuration_auto"):
        return False  # the auto registries are data, resolved through `locate`
    if spec.startswith("transformers.models."):
        return True
    level = len(spec) - len(spec.lstrip("."))
    return 1 <= level <= 2


class Project:
    """Parsed files, loaded on demand, and static name resolution across them."""

    def __init__(self) -> None:
        self._files: dict[str, SourceFile] = {}
        self._mros: dict[int, tuple[ClassInfo, list[ClassInfo]]] = {}

    def load(self, path: str, positions: bool = True) -> SourceFile:
        path = os.path.abspath(path)
        sf = self._files.get(path)
        if sf is None:
            sf = _cached_parse(path, positions)
            self._files[path] = sf
        return sf

    def adopt(self, path: str, text: str) -> SourceFile:
        """`text` (a cut-down version of the file, never cited) stands for `path` in this
        project: names and relative imports resolve as from `path` itself."""
        path = os.path.abspath(path)
        try:
            module = parse_module(text)
        except cst.ParserSyntaxError as err:
            raise CodegenError(f"syntax error: {err.message}", path=path) from None
        sf = SourceFile(path=path, module=module, text=text)
        sf._full = True  # never cited: line numbers stay 0
        _index(sf)
        self._files[path] = sf
        return sf

    def try_load(self, path: str) -> SourceFile | None:
        if not os.path.isfile(path):
            return None
        try:
            return self.load(path)
        except CodegenError:
            return None

    # -- module resolution --------------------------------------------------------------
    def module_path(self, sf: SourceFile, spec: str) -> str | None:
        """File path for an import spec seen in `sf` (relative or `transformers.*`)."""
        if spec.startswith("."):
            level = len(spec) - len(spec.lstrip("."))
            rest = spec.lstrip(".")
            base = os.path.dirname(os.path.abspath(sf.path))
            for _ in range(level - 1):
                base = os.path.dirname(base)
            candidate = os.path.join(base, *rest.split(".")) + ".py" if rest else None
            if candidate and os.path.isfile(candidate):
                return candidate
            # A remote-code file copied out of the tree: resolve `..llama.modeling_llama`
            # against the installed transformers models directory.
            tdir = transformers_dir()
            if tdir and rest and level == 2:
                alt = os.path.join(tdir, "models", *rest.split(".")) + ".py"
                if os.path.isfile(alt):
                    return alt
            if tdir and rest and level == 3:
                alt = os.path.join(tdir, *rest.split(".")) + ".py"
                if os.path.isfile(alt):
                    return alt
            return None
        if spec.startswith("transformers."):
            tdir = transformers_dir()
            if tdir:
                candidate = os.path.join(tdir, *spec.split(".")[1:]) + ".py"
                if os.path.isfile(candidate):
                    return candidate
        return None

    def resolve_name(self, sf: SourceFile, name: str, _depth: int = 0):
        """('class', ClassInfo) | ('function', (sf, FunctionDef)) | ('assign', (sf, expr)) |
        ('external', dotted) for a top-level name visible in `sf`."""
        if name in sf.classes:
            return ("class", sf.classes[name])
        if name in sf.functions:
            return ("function", (sf, sf.functions[name]))
        if name in sf.assigns:
            return ("assign", (sf, sf.assigns[name]))
        if name in sf.imports and _depth < 4:
            spec, imported = sf.imports[name]
            if imported is not None:
                # Only model files are followed (`.configuration_x`, `..llama.modeling_llama`,
                # `transformers.models.x.modeling_x`); library internals stay opaque.
                if _is_model_module(spec):
                    path = self.module_path(sf, spec)
                    if path is not None:
                        other = self.try_load(path)
                        if other is not None:
                            found = self.resolve_name(other, imported, _depth + 1)
                            if found[0] != "external":
                                return found
                return ("external", f"{spec}.{imported}".lstrip("."))
            return ("external", spec)
        return ("external", name)

    def resolve_class(self, sf: SourceFile, name: str) -> ClassInfo | None:
        kind, value = self.resolve_name(sf, name.split(".")[-1] if "." not in name else name)
        return value if kind == "class" else None

    def bases_of(self, cls: ClassInfo) -> list[ClassInfo | str]:
        """Resolved bases: ClassInfo for project classes, the dotted name for external ones."""
        out: list[ClassInfo | str] = []
        for base in cls.bases:
            if not base:
                continue
            if "." in base:
                out.append(base)
                continue
            kind, value = self.resolve_name(cls.sf, base)
            out.append(value if kind == "class" else (value if isinstance(value, str) else base))
        return out

    def mro(self, cls: ClassInfo) -> list[ClassInfo]:
        """Project classes in (approximate) method resolution order, `cls` first. Computed
        once per class (asked tens of thousands of times per analysis, each resolving every
        base by name); the list is shared: read it, do not change it."""
        found = self._mros.get(id(cls))
        if found is not None and found[0] is cls:
            return found[1]
        seen: list[ClassInfo] = []
        stack = [cls]
        while stack:
            current = stack.pop(0)
            if any(current is s for s in seen):
                continue
            seen.append(current)
            stack = [b for b in self.bases_of(current) if isinstance(b, ClassInfo)] + stack
        self._mros[id(cls)] = (cls, seen)
        return seen

    def external_bases(self, cls: ClassInfo) -> list[str]:
        """Dotted names of the non-project bases anywhere up the hierarchy."""
        out: list[str] = []
        for c in self.mro(cls):
            for b in self.bases_of(c):
                if isinstance(b, str):
                    out.append(b)
        return out

    def find_method(self, cls: ClassInfo, name: str) -> tuple[ClassInfo, cst.FunctionDef] | None:
        for c in self.mro(cls):
            if name in c.methods:
                return c, c.methods[name]
        return None

    def find_class_attr(
        self, cls: ClassInfo, name: str
    ) -> tuple[ClassInfo, cst.BaseExpression] | None:
        for c in self.mro(cls):
            if name in c.class_attrs:
                return c, c.class_attrs[name]
        return None

    def find_annotation(
        self, cls: ClassInfo, name: str
    ) -> tuple[ClassInfo, cst.BaseExpression] | None:
        for c in self.mro(cls):
            if name in c.annotations:
                return c, c.annotations[name]
        return None
