"""Timing shared by the ablation benchmarks (`bench_fused_projections`, `bench_rmsnorm`):
one model against a variant of it, in one process, rounds in rotating order."""

from __future__ import annotations

import time

import torch


def fastest_rounds(slots: list[tuple[str, torch.nn.Module]], tokens, rounds: int) -> dict:
    """Each slot's fastest forward (CPU seconds) over `rounds` rounds, the slots' order
    rotating each round so drift in the machine's load reaches them alike; a slot listed
    twice (the baseline again) gives the run's own noise (A/A)."""
    times: dict[str, list[float]] = {label: [] for label, _ in slots}
    with torch.no_grad():
        for round_index in range(rounds):
            shift = round_index % len(slots)
            for label, model in slots[shift:] + slots[:shift]:
                started = time.process_time()
                model(tokens)
                times[label].append(time.process_time() - started)
    return {label: min(values) for label, values in times.items()}
