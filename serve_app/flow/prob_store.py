"""The per-text probabilities of a file analysis (serve_app.flow.file_analysis), kept on disk
so the process's memory does not grow with the file's length."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Mapping

import numpy as np


class ProbabilityStore:
    """Each task's probabilities (float32, a row per scored text) in an unnamed temporary
    file, read back one task at a time for the counting: in memory they grew ~40 bytes a text
    (and twice that while joined). Read with `read`, not mapped: a mapped file's resident
    pages count in the process's RSS too. The file goes when the store is closed (or the
    process ends)."""

    def __init__(self, widths: Mapping[str, int]) -> None:
        self.widths = dict(widths)
        # Closed by `close` (the analysis's `finally`), so no context manager.
        self.files = {t: tempfile.TemporaryFile(prefix="em-file-probs-") for t in self.widths}  # noqa: SIM115
        self.rows = 0

    def append(self, probs: Mapping[str, np.ndarray]) -> None:
        for t, fh in self.files.items():
            block = np.ascontiguousarray(probs[t], dtype=np.float32).reshape(-1, self.widths[t])
            fh.write(block.tobytes())
        self.rows += len(next(iter(probs.values()))) if probs else 0

    def matrix(self, task: str) -> np.ndarray:
        """The task's (rows, labels) float32 matrix, the same numbers as were appended."""
        fh = self.files[task]
        fh.flush()
        fh.seek(0)
        out = np.fromfile(fh, dtype=np.float32).reshape(-1, self.widths[task])
        fh.seek(0, io.SEEK_END)
        return out

    def close(self) -> None:
        for fh in self.files.values():
            fh.close()
