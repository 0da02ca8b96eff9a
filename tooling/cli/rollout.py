"""`emotion-monitor model compare | promote | rollback | promotions`: the candidate version's
shadow comparison, the promotion gate, and one-command rollback (docs/rollout.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from tooling.cli.main import bench_app, model_app

ConfigPath = Annotated[Path, typer.Option(help="The Serve config whose Classifier user_config is rolled.")]
ConfigOnly = Annotated[bool, typer.Option(help="Only edit the Serve config; do not `serve deploy` it.")]
Address = Annotated[str | None, typer.Option(help="Ray dashboard address for `serve deploy`.")]
Who = Annotated[str | None, typer.Option(help="Who promotes (recorded; default user@host).")]

EXIT_REFUSED = 3  # the gate did not hold
EXIT_FAILED = 4  # nothing to roll back to, or `serve deploy` failed


def _dsn() -> str:
    from serve_app.config.settings import get_settings, secret
    from serve_app.runtime.embedded import start_postgres

    s = get_settings()
    dsn = secret(s.stores.postgres_url)
    if dsn is None and s.stores.embedded:
        dsn = start_postgres(s.stores.data_dir.expanduser().resolve() / "postgres")
    if dsn is None:
        typer.echo(
            "no PostgreSQL: set EMOTION_MONITOR_STORES__POSTGRES_URL or "
            "EMOTION_MONITOR_STORES__EMBEDDED=true",
            err=True,
        )
        raise typer.Exit(2)
    return dsn


def comparison_lines(comp: object) -> list[str]:
    """One head's comparison as text: the figures, the confusion matrix, the label shifts."""
    from serve_app.lifecycle.agreement import HeadComparison

    assert isinstance(comp, HeadComparison)
    mt = comp.mix_test
    lines = [
        f"{comp.task}: live {comp.live_version} vs candidate {comp.candidate_version}, {comp.n} pairs",
        f"  agreement {comp.agreement:.3f}   kappa {comp.kappa:.3f}   Stuart-Maxwell chi2 {mt.statistic:.2f}"
        f" (df {mt.df}) p {mt.p_value:.3g}",
        f"  p50 ms/post: live {comp.live_p50_ms:.2f}, candidate {comp.candidate_p50_ms:.2f}",
        "  confusion (rows live, columns candidate):",
        "  " + f"{'':<10}" + "".join(f"{lab[:8]:>9}" for lab in comp.labels),
    ]
    for lab, row in zip(comp.labels, comp.confusion, strict=True):
        lines.append("  " + f"{lab[:10]:<10}" + "".join(f"{v:>9}" for v in row))
    lines.append(f"  {'label':<10}{'live':>8}{'cand':>8}{'diff':>8}  95 % paired interval")
    for s in comp.prevalence:
        lines.append(
            f"  {s.label[:10]:<10}{s.live_share:>8.3f}{s.candidate_share:>8.3f}{s.diff:>+8.3f}"
            f"  [{s.lo:+.3f}, {s.hi:+.3f}]"
        )
    return lines


@model_app.command("compare")
def model_compare(
    version: Annotated[
        str | None, typer.Option(help="Candidate version (default: every one paired).")
    ] = None,
    task: Annotated[str | None, typer.Option(help="One task (default: all).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparisons as JSON.")] = False,
) -> None:
    """Live vs candidate on the shadow pairs: agreement, kappa, confusion, label shifts, latency."""
    from tooling.promotion import compare

    comps = compare(_dsn(), version, task)
    if as_json:
        typer.echo(json.dumps([c.model_dump() for c in comps], indent=2))
        return
    if not comps:
        typer.echo("no shadow pairs stored yet: set `candidate` in serve_config.yaml and `serve deploy`")
    for comp in comps:
        typer.echo("\n".join(comparison_lines(comp)))


@model_app.command("promote")
def model_promote(
    version: Annotated[str, typer.Argument(help="Registry version to promote (the candidate).")],
    config: ConfigPath = Path("serve_config.yaml"),
    config_only: ConfigOnly = False,
    address: Address = None,
    who: Who = None,
) -> None:
    """Promote VERSION if the gate holds (validation figures no worse, enough shadow pairs, no
    label share beyond the bound), roll it with zero downtime, and record it; exit 3 if refused."""
    from serve_app.config.settings import get_settings
    from serve_app.lifecycle.gate import PromotionRefused
    from tooling.promotion import DeployError, promote

    try:
        out = promote(
            config, version, _dsn(), get_settings(), config_only=config_only, address=address, who=who
        )
    except PromotionRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    except DeployError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_FAILED) from None
    assert out.gate is not None
    how = "deployed" if out.deployed else "config only"
    typer.echo(
        f"promoted {version}: {out.from_versions or 'model_dir'} -> {out.to_versions}"
        f" ({len(out.gate.checks)} checks passed; {how})"
    )


@model_app.command("rollback")
def model_rollback(
    config: ConfigPath = Path("serve_config.yaml"),
    config_only: ConfigOnly = False,
    address: Address = None,
    who: Who = None,
) -> None:
    """Go back to the versions before the latest promotion (from model_promotions)."""
    from tooling.promotion import DeployError, RollbackError, rollback

    try:
        out = rollback(config, _dsn(), config_only=config_only, address=address, who=who)
    except (RollbackError, DeployError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"rolled back: {out.from_versions} -> {out.to_versions or 'model_dir'}"
               f" ({'deployed' if out.deployed else 'config only'})")  # fmt: skip


@model_app.command("promotions")
def model_promotions(limit: Annotated[int, typer.Option(min=1, max=1000)] = 20) -> None:
    """The latest promotions and rollbacks: who, what, when."""
    from serve_app.stores.shadow_store import promotions

    for p in promotions(_dsn(), limit):
        typer.echo(f"{p.at:%Y-%m-%d %H:%M:%S} {p.action:<9} {p.actor}: {p.from_versions} -> {p.to_versions}")


@bench_app.command("shadow")
def bench_shadow_cmd(
    model: Annotated[Path, typer.Option(help="Artifact directory (live and candidate).")] = Path(
        "models/multitask"
    ),
    jsonl: Annotated[Path, typer.Option(help="Post corpus.")] = Path(
        "../shared/data/reddit_sample/posts.jsonl"
    ),
    keyword: Annotated[list[str] | None, typer.Option(help="Keywords (repeat).")] = None,
    rounds: Annotated[int, typer.Option(min=1, max=20)] = 4,
    share: Annotated[float, typer.Option(min=0.01, max=1.0, help="Shadow share to measure.")] = 0.1,
    redis_url: Annotated[
        str, typer.Option(help="A Redis the bench may write to.")
    ] = "redis://127.0.0.1:6379/14",
    postgres_url: Annotated[str, typer.Option(help="A database for the shadow pairs.")] = (
        "postgresql://postgres@127.0.0.1:5432/test"
    ),
) -> None:
    """/analyze cold p50 with the shadow at SHARE vs off, same run, same replicas (docs/rollout.md)."""
    from tooling.bench.shadow import bench_shadow

    kws = keyword or ["game", "python", "money", "dog", "work", "music"]
    typer.echo(bench_shadow(model, jsonl, kws, rounds, share, redis_url, postgres_url))
