"""`codegen verify MODEL...`: logits parity of model packages with transformers."""

from __future__ import annotations

import json
from pathlib import Path

import click

from codegen.errors import CodegenError


@click.command()
@click.argument("models", nargs=-1, required=True)
@click.option(
    "--dtype",
    "dtypes",
    type=click.Choice(["fp32", "bf16", "float32", "bfloat16"]),
    multiple=True,
    help="Precision(s) to compare in (repeatable; torch names work too). Default: fp32, bf16.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    help="Verify with exactly this config.json (no shrinking).",
)
@click.option(
    "--shrink-config",
    "shrink_path",
    type=click.Path(path_type=Path),
    help="Verify with a toy derived from this real config.json (keeps its layer pattern).",
)
@click.option(
    "--models",
    "models_dir",
    type=click.Path(path_type=Path),
    help="Models package to load from (default: the shipped references).",
)
@click.option(
    "--trust-remote-code",
    is_flag=True,
    help="For a checkpoint FOLDER: build the HF side by running the folder's own code.",
)
@click.option("--name", help="For a checkpoint FOLDER: the package (default: its model_type).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of results.")
@click.option(
    "--parallel",
    "parallel",
    multiple=True,
    metavar="DIM=2",
    help="Instead: prove the package's shard plan on CPU ranks (tp=2, fsdp=2, ep=2; "
    "tp=2,fsdp=2 on 4; repeatable) against the package on one device.",
)
@click.option(
    "--fp8",
    is_flag=True,
    help="Instead: load an FP8 block-scaled checkpoint (release layout) of each model's toy "
    "config through the adapter; compare with transformers and the unquantized model.",
)
def verify(
    models,
    dtypes,
    config_path,
    shrink_path,
    models_dir,
    trust_remote_code,
    name,
    as_json,
    parallel,
    fp8,
):
    """Prove each MODEL's package matches the real transformers model.

    A random HF model is saved as safetensors, loaded through the package's state-dict
    adapter (missing or unexpected keys fail), and both models' logits are compared.
    MODEL may be a remote-code checkpoint FOLDER (config.json with auto_map): the HF side is
    then the folder's own code (needs --trust-remote-code) and the package the one
    scaffolded from it (its model_type, or --name). Exit 0 only if every model passes.
    """
    from codegen.models import load_spec
    from codegen.verify.cases import default_cases, file_cases
    from codegen.verify.compare import DTYPE_NAMES
    from codegen.verify.run import verify_case

    if config_path and shrink_path:
        raise CodegenError("--config and --shrink-config are exclusive; pick one")
    dtypes = list(dict.fromkeys(DTYPE_NAMES[d] for d in dtypes)) or ["fp32", "bf16"]
    folders = {model: _folder(model) for model in models}
    if any(folders.values()):
        _check_folder_options(folders, trust_remote_code, name, config_path or shrink_path)
    specs = [  # unknown names fail first
        load_spec(_package_name(folders[model], name) if folders[model] else model, models_dir)
        for model in models
    ]
    if fp8:
        if config_path or shrink_path:
            raise CodegenError(
                "--fp8 verifies the toy config of each MODEL name or folder; drop the rest"
            )
        _verify_fp8(specs, [folders[model] for model in models], trust_remote_code, as_json)
        return
    if config_path or shrink_path:  # a config of another model_type fails before any run
        for spec in specs:
            _same_model_type(spec, config_path or shrink_path)
        given = file_cases(config_path or shrink_path, shrink=bool(shrink_path))
    if parallel:
        from codegen.verify.parallel import run_parallel

        config = given[0].config if config_path or shrink_path else None
        echo = None if as_json else click.echo
        results = []
        for model, spec in zip(models, specs, strict=True):
            if folders[model]:  # the folder's own toy config and switch settings
                from codegen.verify.cases import folder_cases

                cases = folder_cases(folders[model], trust_remote_code)
                results += run_parallel([spec], parallel, echo=echo, cases=cases)
            else:
                results += run_parallel([spec], parallel, config, echo=echo)
        if as_json:
            click.echo(json.dumps([r.to_json() for r in results], indent=2))
        raise SystemExit(1 if any(r.status == "fail" for r in results) else 0)
    results = []
    for model, spec in zip(models, specs, strict=True):
        if folders[model]:
            from codegen.verify.cases import folder_cases

            cases = folder_cases(folders[model], trust_remote_code)
        elif config_path or shrink_path:
            cases = given
        else:
            cases = default_cases(spec)
        model_results = []
        for case in cases:  # a line per case as it finishes: a full verify takes seconds
            case_results = verify_case(spec, case, dtypes)
            model_results.extend(case_results)
            if not as_json:
                click.echo(_case_line(case_results))
        results.extend(model_results)
        if not as_json:
            for dtype in dtypes:
                _print_line(spec.name, dtype, [r for r in model_results if r.dtype == dtype])
    if as_json:
        click.echo(json.dumps([r.to_json() for r in results], indent=2))
    if any(r.status == "fail" for r in results):
        raise SystemExit(1)


def _verify_fp8(specs, folders, trust_remote_code: bool, as_json: bool) -> None:
    """One line per model, config and block size; exit 1 if any fails. A remote-code
    folder is checked on its own toy config."""
    from codegen.verify.cases import base_config, folder_cases
    from codegen.verify.fp8 import verify_fp8_case
    from codegen.verify.run import Case

    results = []
    for spec, folder in zip(specs, folders, strict=True):
        if folder:
            cases = folder_cases(folder, trust_remote_code)[:1]
        else:
            cases = [Case(t, base_config(t)[0]) for t in sorted(spec.supported_model_types)]
        for case in cases:
            for result in verify_fp8_case(spec, case):
                results.append(result)
                if not as_json:
                    click.echo(_fp8_line(result))
    if as_json:
        click.echo(json.dumps([r.to_json() for r in results], indent=2))
    if any(not r.passed for r in results):
        raise SystemExit(1)


def _fp8_line(result) -> str:
    def number(value, spec):
        return "-" if value is None else format(value, spec)

    line = (
        f"{'PASS' if result.passed else 'FAIL'}  {result.model:<14} fp8   block={result.block:<3}"
        f" ragged={len(result.ragged):<3}"
        f" cos(hf fp8)={number(result.cosine_vs_transformers, '.6f')}"
        f"  cos(unquantized)={number(result.cosine_vs_unquantized, '.4f')}"
        f"  ignored={len(result.ignored)}  {result.seconds:.1f}s"
    )
    lines = [line, f"      transformers: {result.transformers}"] if result.transformers else [line]
    if result.quantized_text():  # what the release holds in fp8, experts apart
        lines.append(f"      quantized: {result.quantized_text()}")
    if result.scale_names:  # the names the adapter read the scales under
        lines.append(f"      scale names: {', '.join(result.scale_names)}")
    if result.keep_refused:  # flat expert stacks whose blocks span two experts
        lines.append(f"      keep_fp8 refused, as it must: {result.keep_refused}")
    if not result.passed:
        lines.append(f"      {result.case}: {_fp8_why(result)}")
    return "\n".join(lines)


def _fp8_why(result) -> str:
    from codegen.verify.fp8 import COSINE_BOUND

    if result.error:
        return result.error
    reasons = []
    if result.first_mismatch:
        reasons.append(f"first mismatch: {result.first_mismatch}")
    if result.missing_keys or result.unexpected_keys:
        reasons.append(f"missing {result.missing_keys[:4]} unexpected {result.unexpected_keys[:4]}")
    if result.relative_diff is not None and result.relative_diff > result.bound:
        reasons.append(
            f"logits differ from transformers by {result.relative_diff:.2e} of max|logit|, "
            f"bound {result.bound:.2e}"
        )
    cosine = result.cosine_vs_unquantized
    if cosine is not None and cosine < COSINE_BOUND:
        reasons.append(f"cosine {cosine:.4f} against the unquantized model, below {COSINE_BOUND}")
    if result.roundtrip_exact is False:
        reasons.append("keep_fp8 round trip through to_hf not bit exact")
    if result.keep_matches is False:
        reasons.append("keep_fp8 weights dequantized differ from the dequantizing load")
    return "; ".join(reasons) or "failed"


def _same_model_type(spec, path) -> None:
    """Refuse a --config/--shrink-config written for a model_type the package does not run
    (read from the file's `model_type`, or its `text_config`'s for a multimodal wrapper)."""
    from codegen.analyze.config import load_json

    try:
        data = load_json(str(path))
    except CodegenError:
        return  # unreadable: reported below, in verify's own words
    text = data.get("text_config") if isinstance(data.get("text_config"), dict) else {}
    found = [t for t in (data.get("model_type"), text.get("model_type")) if isinstance(t, str)]
    if found and not set(found) & spec.supported_model_types:
        supported = ", ".join(sorted(spec.supported_model_types))
        raise CodegenError(
            f"the config is for model_type {found[0]!r}, a different model_type than "
            f"{spec.name!r} supports ({supported})",
            path=str(path),
        )


def _case_line(results) -> str:
    """Progress: one case, every dtype, on one line."""
    first = results[0]
    verdicts = " ".join(f"{r.dtype}:{r.status}" for r in results)
    return f"  .. {first.model} {first.case}: {verdicts} ({results[-1].seconds:.1f}s)"


def _folder(model: str) -> Path | None:
    """A checkpoint folder (a directory with config.json), or None for a package name."""
    path = Path(model)
    return path if path.is_dir() and (path / "config.json").is_file() else None


def _check_folder_options(folders, trust_remote_code, name, config_file) -> None:
    folder = next(path for path in folders.values() if path)
    from codegen.verify.remote import require_trust

    require_trust(folder, trust_remote_code)
    if name and len(folders) > 1:
        raise CodegenError("--name names the package of one checkpoint FOLDER; give one")
    if config_file:
        raise CodegenError(f"{folder}: a checkpoint folder is verified with its own config.json")


def _package_name(folder: Path, name: str | None) -> str:
    from codegen.verify.remote import folder_model_type

    return name or folder_model_type(folder)


def _print_line(name: str, dtype: str, results) -> None:
    """One line per model and dtype: PASS when nothing fails (a switch setting the
    package refuses in one line is counted, not failed)."""
    passed = not any(r.status == "fail" for r in results)
    refused = [r for r in results if r.status == "refused"]
    skipped = [r for r in results if r.status == "skipped"]
    cosines = [r.cosine for r in results if r.cosine is not None]
    diffs = [r.max_abs_diff for r in results if r.max_abs_diff is not None]
    seconds = sum(r.seconds for r in results)
    cosine = f"{min(cosines):.6f}" if cosines else "-"
    diff = f"{max(diffs):.2e}" if diffs else "-"
    line = f"{'PASS' if passed else 'FAIL'}  {name:<14} {dtype:<5} cos={cosine}  max_diff={diff}"
    line += f"  cases={len(results)}"
    if refused:
        line += f" refused={len(refused)}"
    if skipped:
        line += f" skipped={len(skipped)}"
    click.echo(line + f"  {seconds:.1f}s")
    for result in results:
        if result.status == "refused":
            click.echo(f"      {result.case}: refused: {result.refused}")
        elif result.status == "skipped":
            click.echo(f"      {result.case}: skipped: {result.skipped}")
        elif result.status == "fail":
            click.echo(f"      {result.case}: {_why(result)}")
        if result.fused_kernel_diff is not None:
            click.echo(
                f"      {result.case}: judged with HF's attention formula: the package's fused "
                f"attention alone is {result.fused_kernel_diff:.2e} of max|logit| from HF's "
                "fp32 (its roundings tip a choice HF's one kernel leaves, e.g. near-tied experts)"
            )


def _why(result) -> str:
    if result.error:
        return result.error
    reasons = []
    if result.missing_keys:
        reasons.append(f"missing keys {result.missing_keys[:4]}")
    if result.unexpected_keys:
        reasons.append(f"unexpected keys {result.unexpected_keys[:4]}")
    if result.roundtrip_exact is False:
        reasons.append("adapter round trip not exact")
    if result.export_matches is False:
        reasons.append("export through to_hf + from_pretrained does not give HF's logits")
    if result.first_gradient_divergence:
        reasons.append(f"first gradient divergence: {result.first_gradient_divergence}")
    if result.first_divergence:
        reasons.append(f"first divergence: {result.first_divergence}")
    if result.lifecycle_failure:
        reasons.append(f"meta-device lifecycle: {result.lifecycle_failure}")
    if result.packed_failure:
        reasons.append(f"packed sequences: {result.packed_failure}")
    if result.relative_diff is not None and result.bound is not None:
        if result.relative_diff > result.bound:
            reasons.append(
                f"logits differ by {result.relative_diff:.2e} of max|logit|, bound "
                f"{result.bound:.2e} (HF's own noise {result.hf_noise:.2e})"
            )
    if result.same_dtype_diff is not None and result.same_dtype_bound is not None:
        if result.same_dtype_diff > result.same_dtype_bound:
            reasons.append(
                f"logits differ from HF's in {result.dtype} by {result.same_dtype_diff:.2e} "
                f"of max|logit|, bound {result.same_dtype_bound:.2e} (attention-kernel noise "
                f"in {result.dtype} {result.same_dtype_noise:.2e})"
            )
    if not reasons:
        reasons.append(f"logits differ (cos={result.cosine:.6f})")
    return "; ".join(reasons)
