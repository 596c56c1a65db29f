"""DropEmptySettings: an empty FIXED_SETTINGS and its check go; a table with entries or read
elsewhere stays."""

import libcst.matchers as m

from codegen.models import references_dir
from codegen.scaffold.source import SourcePackage
from codegen.transforms.drop_empty_settings import DropEmptySettings
from codegen.transforms.edits import findall
from codegen.transforms.testing import package_of

_TABLE = m.Name("FIXED_SETTINGS")


def _package(reference):
    return SourcePackage.from_directory(references_dir() / reference)


def test_an_empty_table_goes_with_its_check():
    package = _package("qwen3_moe")  # its table pins nothing
    assert findall(package.module("args.py"), m.Call(func=m.Name("require_settings")))
    DropEmptySettings().apply(package)
    args = package.module("args.py")
    assert not findall(args, _TABLE)
    assert not findall(args, m.Call(func=m.Name("require_settings")))
    assert findall(args, m.FunctionDef(name=m.Name("from_hf_config")))


def test_a_table_with_entries_stays():
    package = _package("llama")
    before = package.render()
    DropEmptySettings().apply(package)
    assert package.render() == before


def test_an_empty_table_read_elsewhere_stays():
    args = (
        "FIXED_SETTINGS = {}\n\n\n"
        "def check(hf_config):\n"
        "    require_settings(hf_config, FIXED_SETTINGS)\n"
        "    return len(FIXED_SETTINGS)\n"
    )
    package = package_of({"args.py": args})
    DropEmptySettings().apply(package)
    assert package.render()["args.py"] == args
