"""Expert widths `F.grouped_mm` refuses (not a multiple of 16 bytes) run and match HF.

The kernel multiplies the sorted rows only where every width spans a multiple of 16 bytes;
a checkpoint may have any width (HF's per-expert loop takes it), so the package's experts
multiply those one expert at a time. 37 is off in fp32 and bf16; 36 is off in bf16 only,
and under tp=2 each rank's 18 is off in fp32 too.
"""

from __future__ import annotations

import pytest

from codegen.models import load_spec
from codegen.verify.cases import base_config
from codegen.verify.parallel import verify_parallel
from codegen.verify.run import Case, verify_case


def _config(width: int):
    config = base_config("qwen3_moe")[0]
    config.moe_intermediate_size = width
    return config


def test_unaligned_expert_width_verifies_in_fp32_and_bf16():
    case = Case("qwen3_moe+width37", _config(37))
    results = verify_case(load_spec("qwen3_moe"), case, ["fp32", "bf16"])
    for result in results:
        assert result.passed, (result.dtype, result.error)


# tp=2 splits the width: 36 in halves of 18; ep=2 keeps it whole
@pytest.mark.parametrize(("setting", "width"), [("tp=2", 36), ("ep=2", 37)])
def test_unaligned_expert_width_shards_as_on_one_device(setting, width):
    result = verify_parallel(load_spec("qwen3_moe"), _config(width), setting)
    assert result.passed, result.line()
