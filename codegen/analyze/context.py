"""Shared state of one analysis: the loaded model, evidence, notes, memoised traces."""

from __future__ import annotations

from dataclasses import dataclass, field

from codegen.analyze.dataflow import Tracer
from codegen.analyze.evaluate import ModuleRec, Site
from codegen.analyze.features import Unsupported
from codegen.analyze.model import Model


@dataclass
class Trace:
    tracer: Tracer
    result: object

    @property
    def terms(self):
        return self.tracer.terms


@dataclass
class Ctx:
    model: Model
    evidence: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    extras: list[Unsupported] = field(default_factory=list)  # always-unsupported findings
    # position tables whose rows the rotation reads (detect_rope): not token tables
    rope_tables: list[ModuleRec] = field(default_factory=list)
    _traces: dict = field(default_factory=dict)
    _memo: dict = field(default_factory=dict)  # readings several detectors ask for

    def memo(self, key, compute):
        """`compute()`, once per analysis for `key`."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    @property
    def roles(self):
        return self.model.roles

    def cite(self, key: str, where: str | None) -> None:
        if where:
            self.evidence[key] = where

    def cite_config(self, key: str, value=None) -> str:
        text = self.model.cite_config(key)
        return text if value is None else f"{text}={_short(value)}"

    def site(self, rec: ModuleRec | None) -> str | None:
        if rec is None or rec.site is None:
            return None
        return rec.site.cite()

    def attr_site(self, owner: ModuleRec, name: str) -> str | None:
        site = owner.assign_sites.get(name)
        return site.cite() if site is not None else self.site(owner.attrs.get(name))

    def class_site(self, rec: ModuleRec | None) -> str | None:
        if rec is None or rec.cls is None:
            return None
        return rec.cls.cite()

    def unsupported(self, feature: str, detail: str, where: str | None) -> None:
        if not any(u.feature == feature for u in self.extras):
            self.extras.append(Unsupported(feature, detail, where or "?"))

    def trace(self, rec: ModuleRec, method: str = "forward", inline: bool = True, inputs=None):
        key = (id(rec), method, inline)
        if key not in self._traces:
            tracer = Tracer(self.model.interp, self.model.roles, inline=inline)
            result = tracer.trace(rec, method, inputs=inputs)
            self._traces[key] = Trace(tracer, result)
        return self._traces[key]


def site_of(site: Site | None) -> str | None:
    return site.cite() if site is not None else None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
