"""A failing case is reported on one short line, however long the exception's message."""

from codegen.verify.run import ERROR_CHARACTERS, _one_line


def test_a_long_load_error_keeps_its_first_sentences_and_counts_the_rest() -> None:
    mismatch = "size mismatch for layers.{0}.attention.wq.weight: shape [160, 96] vs [96, 96]. "
    err = RuntimeError("".join(mismatch.format(i) for i in range(40)))
    line = _one_line(err)
    assert "\n" not in line and len(line) < ERROR_CHARACTERS + 60
    assert line.startswith("RuntimeError: size mismatch for layers.0.attention.wq.weight")
    assert line.endswith(" characters)") and "layers.39" not in line


def test_a_short_error_is_kept_whole() -> None:
    assert _one_line(ValueError("bad\n  value"), with_type=False) == "bad value"
