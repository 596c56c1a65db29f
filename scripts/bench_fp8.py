"""FP8 checkpoint load time against the bf16 load of the same checkpoint, as a ratio.

One random HF model per reference (bench_forward's sizes: 4 layers, hidden 512, vocab
32000) is written twice in one process: as a bf16 checkpoint, and as the FP8 release of
the same weights (`weight_scale_inv` per 128x128 block, per expert for MoE, sharded, as
`codegen verify --fp8` lays it out). Each load is what an engine does: read the safetensors
files, convert with the package's adapter, `load_state_dict` into the model; the fp8 load
also dequantizes into fp32 (the model's dtype, like the bf16 load's upcast), and the
`keep_fp8` load keeps fp8 weights with their scales (no model load: an fp8 engine takes
them). Loads alternate, median of --repeat after a warm-up. A ratio > 1 is the price of
dequantizing on load.

    python scripts/bench_fp8.py [MODEL ...] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_forward import BENCH_SIZES  # noqa: E402 - the sizes every benchmark shares

REFERENCES = ["qwen3", "qwen3_moe", "deepseek_v3"]
BLOCK = 128  # the real releases' weight_block_size


def config_of(name: str):
    from codegen.verify.tiny_config import hf_config_class, tiny_config

    toy = tiny_config(name).to_dict()
    toy.update({k: v for k, v in BENCH_SIZES.items() if k in toy})
    if "qk_rope_head_dim" in toy:
        toy["head_dim"] = toy["qk_rope_head_dim"]
    for key in ("layer_types", "transformers_version", "model_type", "qk_head_dim"):
        toy.pop(key, None)
    return hf_config_class(name)(**toy)


def bench(name: str, repeat: int) -> dict:
    import torch
    from safetensors.torch import save_file

    from codegen.models import load_spec
    from codegen.verify.fp8 import (
        Layout,
        fp8_state,
        fp32_modules,
        quantization_config,
        write_release,
    )
    from codegen.verify.hf_checkpoint import load_checkpoint, random_hf_model, save_checkpoint

    spec = load_spec(name)
    config = config_of(name)
    hf_model = random_hf_model(config, weight_noise=0.0)
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        save_checkpoint(hf_model, directory / "hf")
        state = load_checkpoint(directory / "hf")
        config_dict = json.loads((directory / "hf" / "config.json").read_text())
        (directory / "bf16").mkdir()
        bf16 = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in state.items()}
        save_file(
            {k: v.contiguous() for k, v in bf16.items()}, directory / "bf16" / "m.safetensors"
        )
        args = spec.args.from_hf_config(config)
        model = spec.model(args)
        # the layers' keys off the key table; whole expert stacks off the model's shapes
        layout = Layout.of(spec.adapter(args), state, model.state_dict())
        release = fp8_state(state, BLOCK, layout, fp32_modules(hf_model))
        write_release(release, config_dict, BLOCK, directory / "fp8")
        qconfig = quantization_config(BLOCK)

        def load(folder, **adapter_kwargs):
            started = time.perf_counter()
            adapter = spec.adapter(args, **adapter_kwargs)
            house = adapter.from_hf(load_checkpoint(folder))
            if not adapter_kwargs.get("keep_fp8"):
                model.load_state_dict(house, strict=False)
            return time.perf_counter() - started

        runs = {
            "bf16": lambda: load(directory / "bf16"),
            "fp8": lambda: load(directory / "fp8", quantization_config=qconfig),
            "fp8_keep": lambda: load(directory / "fp8", quantization_config=qconfig, keep_fp8=True),
        }
        times: dict[str, list[float]] = {label: [] for label in runs}
        for run in runs.values():  # warm-up
            run()
        for _ in range(repeat):
            for label, run in runs.items():
                times[label].append(run())
        sizes = {
            label: sum(p.stat().st_size for p in (directory / label).glob("*.safetensors"))
            for label in ("bf16", "fp8")
        }
    median = {label: statistics.median(values) for label, values in times.items()}
    return {
        "model": name,
        "bf16_s": median["bf16"],
        "fp8_s": median["fp8"],
        "fp8_keep_s": median["fp8_keep"],
        "fp8_ratio": median["fp8"] / median["bf16"],
        "fp8_keep_ratio": median["fp8_keep"] / median["bf16"],
        "bf16_mb": sizes["bf16"] / 2**20,
        "fp8_mb": sizes["fp8"] / 2**20,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=REFERENCES)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = [bench(name, options.repeat) for name in options.models]
    if options.json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        print(
            f"{row['model']:<12} bf16 {row['bf16_s'] * 1000:7.1f} ms ({row['bf16_mb']:.1f} MB)"
            f"  fp8 {row['fp8_s'] * 1000:7.1f} ms ({row['fp8_mb']:.1f} MB)"
            f"  fp8/bf16 {row['fp8_ratio']:.2f}x"
            f"  keep_fp8 {row['fp8_keep_s'] * 1000:7.1f} ms ({row['fp8_keep_ratio']:.2f}x)"
        )
    ratios = [row["fp8_ratio"] for row in rows]
    print(f"fp8 load / bf16 load: median {statistics.median(ratios):.2f}x over {len(rows)} models")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
