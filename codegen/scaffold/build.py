"""Build a model package: a reference's source plus an ordered list of transform steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codegen.errors import CodegenError
from codegen.models import references_dir
from codegen.scaffold.config_reads import check_config_reads
from codegen.scaffold.describe import describe
from codegen.scaffold.source import SourcePackage
from codegen.scaffold.standalone import vendor
from codegen.scaffold.tidy import ruff_format, tidy
from codegen.transforms.catalog import TRANSFORMS
from codegen.transforms.edits import EditError


@dataclass(frozen=True)
class Step:
    """One transform to run, why (the rule and its evidence), and with which parameters."""

    transform: str
    params: dict[str, Any] = field(default_factory=dict)
    rule: str = ""
    reason: str = ""  # e.g. "attention.qk_norm = per_head (modeling_qwen3.py:160)"


class PackageFiles(dict):
    """A package's rendered files (name -> text), with the rules whose transform changed
    them: the rules model.py's header lists, and the count `codegen scaffold` reports."""

    rules: tuple[str, ...] = ()


def build_package(
    reference: str,
    name: str,
    model_types: list[str],
    steps: list[Step],
    *,
    features: Any = None,
    title: str | None = None,
    target: Any = None,
) -> PackageFiles:
    """The rendered files of the new package (nothing is written). `target` (a
    `codegen.scaffold.target.Target`) gives the config class defaults the text describes."""
    directory = references_dir() / reference
    if not (directory / "model.py").is_file():
        raise CodegenError(f"no reference named {reference!r}", path=str(references_dir()))
    package = SourcePackage.from_directory(directory)
    title = title or name
    rename = Step("rename_model", {"name": name, "model_types": model_types, "title": title})
    retarget = Step(
        "retarget_text", _retarget_params(name, title, model_types, features, reference)
    )
    shards = Step("sync_shard_plan", _shard_params(steps, features))
    plan_prose = Step("describe_shard_plan")
    edited = []  # the steps whose transform changed a file: the rules the text lists
    for step in [*steps, shards, plan_prose, rename, retarget]:
        before = dict(package.files)
        transform = TRANSFORMS.get(step.transform)
        if transform is None:
            raise CodegenError(f"rule {step.rule or step.transform!r}: unknown transform")
        try:
            transform().apply(package, features, **step.params)
        except EditError as err:
            raise CodegenError(
                f"transform {step.transform} cannot apply to the {reference} reference: {err}"
            ) from None
        except Exception as err:  # noqa: BLE001 - an unexpected source is a gap, not a crash
            why = f" ({step.reason})" if step.reason else ""
            raise CodegenError(
                f"rule {step.rule or step.transform}{why} cannot be realised: transform "
                f"{step.transform} failed on this source ({type(err).__name__}: {err}); "
                "nothing written"
            ) from None
        if changed_files(before, package.files):
            package.applied.append(step.rule or step.transform)
            edited.append(step)
    describe(package, title, edited, features, target)
    tidy(package)
    # once more on the tidied package, for the HF names alone: a field tidy dropped (a
    # pinned `rope_interleave`) is no longer the package's word, so prose naming it goes
    again = {**retarget.params, "references": []}
    TRANSFORMS[retarget.transform]().apply(package, features, **again)
    files = PackageFiles(ruff_format(vendor(package.files, index=package.index)))
    available = _config_answers(steps, target)
    if available is not None and "args.py" in files:
        check_config_reads(
            files["args.py"],
            available,
            target=model_types[0] if model_types else name,
            config_class=getattr(getattr(features, "source", None), "config_class", None),
        )
    files.rules = tuple(step.rule for step in edited if step.rule)
    return files


def _config_answers(steps: list[Step], target: Any) -> set[str] | None:
    """The names the target's config answers to (fields, attribute_map names, properties,
    class attributes), or None when the package is built for no config (a toy step list)."""
    if target is not None and getattr(target, "config_fields", None):
        return set(target.config_fields) | set(getattr(target, "config_members", ()))
    for step in steps:
        if step.transform == "align_config_fields":
            return set(step.params.get("fields", ()))
    return None


def changed_files(before: dict, after: dict) -> list[str]:
    """The files whose code differs between two states of a package's `files` (one added
    or removed included): a transform that found nothing to edit changed none. A file
    still holding the same tree is unchanged without being rendered."""
    names = dict.fromkeys([*before, *after])
    return [
        name
        for name in names
        if before.get(name) is not after.get(name)
        and (name not in before or name not in after or before[name].code != after[name].code)
    ]


def _shard_params(steps: list[Step], features: Any = None) -> dict:
    """The plan entries the steps' rules add (`rules/sharding.py`), later ones winning, keyed
    on each step's parameters as its transform resolves them."""
    from codegen.scaffold.table import load_sharding

    shards_of = load_sharding().shards_of
    adds, optional = {}, set()
    for step in steps:
        transform = TRANSFORMS.get(step.transform)
        params = transform().resolved_params(step.params, features) if transform else step.params
        for row in shards_of(step.transform, params):
            adds.update(row.entries(params))
            optional.update(row.optional)
    return {"adds": adds, "optional": sorted(optional)}


def _retarget_params(name: str, title: str, model_types, features, origin: str) -> dict:
    """Every reference's name is foreign to the package, except the target's own; `origin`
    is the reference the package is copied from."""
    from codegen.analyze.reference import ORDER
    from codegen.transforms.retarget_text import foreign_hf_names

    own = {name, *model_types}
    source = getattr(features, "source", None)
    references = [ref for ref in ORDER if ref not in own]
    modeling, configuration = getattr(source, "modeling", ""), getattr(source, "configuration", "")
    return {
        "name": name,
        "title": title,
        "references": references,
        "config_class": getattr(source, "config_class", None),
        "own": sorted(own),
        # the references' HF field and function names the target's source lacks
        "foreign_names": foreign_hf_names(ORDER, modeling, configuration),
        "origin": origin,
    }


def read_reference_files(reference: str) -> dict[str, str]:
    directory = references_dir() / reference
    return {path.name: path.read_text() for path in sorted(Path(directory).glob("*.py"))}
