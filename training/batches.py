"""How an epoch's examples are mixed and batched: sources by their repeat ratios, batches of
similar length (little padding), and the padded tensors a batch becomes."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

import torch

T = TypeVar("T")


def mix_epoch(sources: dict[str, list[T]], repeats: dict[str, float], rng: random.Random) -> list[T]:
    """One epoch's examples: each source repeated (or subsampled) by its ratio."""
    out: list[T] = []
    for name, exs in sources.items():
        r = repeats.get(name, 1.0)
        whole, frac = int(r), r - int(r)
        out.extend(exs * whole)
        if frac > 0:
            out.extend(rng.sample(exs, round(frac * len(exs))))
    return out


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: random.Random, group: int = 50
) -> list[list[int]]:
    """Shuffle, sort by length within groups of `group` batches, then shuffle batches.

    Batches hold texts of similar length, so padding to the longest wastes little,
    while the order of batches stays random.
    """
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    chunk = batch_size * group
    batches: list[list[int]] = []
    for start in range(0, len(idx), chunk):
        part = sorted(idx[start : start + chunk], key=lambda i: lengths[i])
        batches.extend(part[j : j + batch_size] for j in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def collate(ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    width = max(len(x) for x in ids)
    input_ids = torch.zeros((len(ids), width), dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": torch.zeros_like(input_ids),
    }
