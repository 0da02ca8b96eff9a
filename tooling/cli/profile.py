"""`emotion-monitor model profile`: the reference profile the drift watch compares live posts
against (docs/drift.md), added to an existing artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tooling.cli.main import DataRoot, model_app


@model_app.command("profile")
def model_profile(
    model_dir: Annotated[Path, typer.Argument(help="Artifact directory (model.onnx is changed in place).")],
    data_root: DataRoot = None,
    posts: Annotated[
        int, typer.Option(min=100, help="Corpus posts (reddit_sample) the compared distributions come from.")
    ] = 1000,
    embeddings: Annotated[int, typer.Option(min=50, help="Pooled embeddings kept in the profile.")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the posts' sample.")] = 0,
) -> None:
    """Expose the pooled sentence vector as the graph's `embedding` output (no second model;
    the answers do not change) and write reference_profile.json and reference_embeddings.npy:
    per head the validation label mix and accuracy (reddit_emotion7 / reddit_sentiment
    validation), and the predicted mix, confidences and embeddings of a fixed sample of the
    local Reddit corpus."""
    from dataclasses import replace

    from training.data import default_data_root
    from training.profile import ProfileError, default_data, write_profile

    data = replace(default_data(data_root or default_data_root()), traffic_posts=posts, seed=seed)
    try:
        written = write_profile(model_dir, data, embeddings)
    except ProfileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(f"wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")
