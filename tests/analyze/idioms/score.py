"""Accuracy of the analyzer on the idiom fixtures: fields right / fields labelled.

`python -m tests.analyze.idioms.score` writes every fixture to a temporary folder, analyses
it statically and prints each wrong field and the overall figure.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from codegen.analyze import analyze
from tests.analyze.idioms import FIXTURES


def wrong_fields(module, dest: Path) -> tuple[dict, int]:
    """{field: (expected, got)} for the labelled fields the analysis gets wrong, and the
    number of labelled fields."""
    features = analyze(str(module.folder(dest)))
    wrong = {}
    for name, expected in module.EXPECTED.items():
        got = _value(features, name)
        if got != expected:
            wrong[name] = (expected, got)
    return wrong, len(module.EXPECTED)


def _value(features, name: str):
    if name == "unsupported":
        return sorted({u.feature for u in features.unsupported})
    try:
        return features.get(name)
    except AttributeError:
        return "<no such field>"


def main() -> None:
    right = total = 0
    with tempfile.TemporaryDirectory() as tmp:
        for module in FIXTURES:
            wrong, count = wrong_fields(module, Path(tmp))
            name = module.__name__.rsplit(".", 1)[-1]
            print(f"{name}: {count - len(wrong)}/{count}")
            for field, (expected, got) in wrong.items():
                print(f"  {field}: expected {expected!r}, got {got!r}")
            right += count - len(wrong)
            total += count
    print(f"accuracy: {right}/{total} = {right / total:.1%}")


if __name__ == "__main__":
    main()
