"""The `thawrec` command line: parse, load config, call library functions. Nothing else."""

from __future__ import annotations

import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from thawrec.errors import ThawrecError
from thawrec.suites import SUITES

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Cold-start recommendation: train, benchmark, serve.")
data_app = typer.Typer(no_args_is_help=True, help="Import, fetch or synthesize datasets.")
app.add_typer(data_app, name="data")
console = Console()


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (not the one at setup)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _setup(verbose: bool) -> None:
    """Warnings (everything with -v); progress lines (one per epoch, model and seed) always, so a
    run piped to a log file shows where it is."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    plog = logging.getLogger("thawrec.progress")
    if not plog.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        plog.addHandler(handler)
    plog.setLevel(logging.INFO)
    plog.propagate = False


def _fail(e: Exception) -> None:
    console.print(f"[bold red]error:[/] {e}")
    raise typer.Exit(2)


def _command() -> str:
    return "thawrec " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def _seeds(n: int) -> list[int]:
    if n < 1:
        _fail(ThawrecError("--seeds must be >= 1"))
    return list(range(n))


def _print_rows(payload: dict, groups=("all", "new", "regular"), metrics=("auc", "gauc")) -> None:
    t = Table(title=f"{payload['suite']} on {payload['dataset']} (mean ± std over {len(payload['seeds'])} seeds)")
    t.add_column("model")
    for g in groups:
        for m in metrics:
            t.add_column(f"{g} {m.upper()}", justify="right")
    models = list(dict.fromkeys(r["model"] for r in payload["rows"]))
    idx = {(r["model"], r["group"], r["metric"]): r for r in payload["rows"]}
    for model in models:
        cells = []
        for g in groups:
            for m in metrics:
                r = idx.get((model, g, m))
                cells.append("n/a" if r is None or r["mean"] != r["mean"] else f"{r['mean']:.4f} ± {r['std']:.4f}")
        t.add_row(model, *cells)
    console.print(t)


# ----------------------------------------------------------------------------------------------
@app.command()
def demo(
    data: Optional[Path] = typer.Option(None, help="A dataset folder (canonical or RecBole); default: a scenario world."),
    out: Path = typer.Option(Path("runs/demo"), help="Where the report goes."),
    seeds: int = typer.Option(3, help="Number of seeds."),
    epochs: int = typer.Option(3, help="Step budget in passes over the training rows (early stopping may end sooner)."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Cold-start users on a scenario world: MAIL against its base and a baseline, between the floor
    and the ceiling, with paired tests; writes demo.md, demo.png and the full report."""
    _setup(verbose)
    from thawrec.suites import demo as demo_suite

    t0 = time.perf_counter()
    console.print(f"[bold]thawrec demo[/]: {'MAIL scenario world' if data is None else data} -> {out}")
    try:
        demo_suite.run(data, out, _seeds(seeds), epochs=epochs, device=device, command=_command())
    except ThawrecError as e:
        _fail(e)
    console.print((out / "demo.md").read_text(), soft_wrap=True, markup=False)
    console.print(f"table: {out / 'demo.md'}  plot: {out / 'demo.png'}  ({time.perf_counter() - t0:.0f} s)")


@app.command()
def bench(
    suite: str = typer.Argument(..., help=f"Suite name: {', '.join(SUITES)}."),
    data: Optional[Path] = typer.Option(None, help="Dataset folder; default: the synthetic world."),
    seeds: int = typer.Option(3, help="Number of seeds (>= 3 for the report's t-tests)."),
    out: Path = typer.Option(Path("runs/bench"), help="Output folder for results.json and report.md."),
    epochs: Optional[int] = typer.Option(None, help="Step budget in passes over the training rows, the same for every "
                                                    "model; early stopping may end sooner (default 5; dauc: 30 epochs, "
                                                    "the paper's)."),
    batch_size: Optional[int] = typer.Option(None, help="Batch size (default 1024; dauc: 128 users, the paper's; "
                                                        "uie: 512, the paper's)."),
    device: str = typer.Option("auto"),
    protocol: str = typer.Option("auto", help="poso: movielens (Table 5), new-users (Table 2), "
                                              "auto = new-users on the synthetic world, movielens on --data."),
    sections: str = typer.Option("main,baselines", help="poso: comma list of main, baselines, pc (Table 6), "
                                                         "mha (Table 7); uie: main, baselines, fig3 (Fig. 3)."),
    models: Optional[str] = typer.Option(None, help="poso, mail, dauc, uie: only these models (comma list; the "
                                                    "bases are kept)."),
    clusters: Optional[int] = typer.Option(None, help="dauc: number of user clusters (default 100 synthetic, 20 "
                                                      "real-data proxies)."),
    k: Optional[int] = typer.Option(None, help="dauc: K of Recall@K / NDCG@K (default 50 synthetic, 20 proxies)."),
    window_hours: Optional[int] = typer.Option(None, help="dauc: CTR window before each replay slice, hours."),
    cold_frac: Optional[float] = typer.Option(None, help="dauc: share of users whose target-domain training rows "
                                                         "are hidden (simulated cold start; ML-100K default 0.3)."),
    replay: str = typer.Option("smoothed", help="dauc: the replay's CTR: smoothed (towards each item's global CTR, "
                                                "density-adapted windows, backfill) or paper (plain CTR, fixed window)."),
    synth_interactions: Optional[int] = typer.Option(None, help="Size of the synthetic world when no --data."),
    synth_users: Optional[int] = typer.Option(None, help="Users of the synthetic world when no --data."),
    scenario: Optional[str] = typer.Option(None, help="Synthetic world with one paper's mechanism planted: poso, "
                                                      "mail, dauc or uie (no --data)."),
    strength: Optional[float] = typer.Option(None, help="Scenario strength in [0, 1]; 0 = the null world; default "
                                                        "the scenario's documented strength."),
    world_seed: Optional[int] = typer.Option(None, help="Seed of the synthetic world (the run seeds vary training "
                                                        "and the split)."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run a paper's protocol end to end and write results.json, report.md and plots."""
    _setup(verbose)
    if suite not in SUITES:
        _fail(ThawrecError(f"unknown suite '{suite}'. Fix: choose one of {', '.join(SUITES)}"))
    import importlib

    runner = importlib.import_module(f"thawrec.suites.{suite}")
    try:
        extra: dict = {}
        if suite in ("poso", "mail", "dauc", "uie"):
            extra["variants"] = [x.strip() for x in models.split(",")] if models else None
        if suite in ("poso", "uie"):
            extra["sections"] = [x.strip() for x in sections.split(",") if x.strip()]
        if suite == "poso":
            extra["protocol"] = protocol
        synth = {k: v for k, v in (("n_interactions", synth_interactions), ("n_users", synth_users)) if v}
        if synth:
            extra["synth"] = synth
        if suite != "base":
            extra.update(scenario=scenario, strength=strength, world_seed=world_seed)
        elif scenario or strength is not None:
            _fail(ThawrecError("bench base runs on the default world or --data. Fix: drop --scenario/--strength"))
        if suite == "dauc":
            if window_hours is not None and window_hours < 1:
                _fail(ThawrecError("--window-hours must be >= 1"))
            extra.update(n_clusters=clusters, k=k, window=window_hours and window_hours * 3600, cold_frac=cold_frac,
                         epochs=epochs, batch_size=batch_size or 128, progress=True, replay=replay)
            payload = runner.run(data, out, _seeds(seeds), command=_command(), **extra)
        else:
            payload = runner.run(data, out, _seeds(seeds),
                                 train={"epochs": epochs or 5, "device": device,
                                        "batch_size": batch_size or (512 if suite == "uie" else 1024)},
                                 command=_command(), **extra)
    except ThawrecError as e:
        _fail(e)
    if suite == "base":
        _print_rows(payload)
    else:
        console.print((out / "report.md").read_text(), soft_wrap=True, markup=False)
    console.print(f"results: {out / 'results.json'}  report: {out / 'report.md'}")


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML run config, e.g. src/thawrec/configs/base_ml100k.yaml."),
    out: Optional[Path] = typer.Option(None, help="Override the config's output folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.pt."),
    epochs: Optional[int] = typer.Option(None),
    seed: Optional[int] = typer.Option(None),
    device: Optional[str] = typer.Option(None),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Train one model from a YAML config; checkpoints every epoch; --resume continues exactly."""
    _setup(verbose)
    from thawrec.config import load_config
    from thawrec.train.run import train as run_train

    try:
        cfg = load_config(config)
        if out is not None:
            cfg.out = str(out)
        for k, v in (("epochs", epochs), ("seed", seed), ("device", device)):
            if v is not None:
                setattr(cfg.train, k, v)
        metrics = run_train(cfg, resume=resume)
    except ThawrecError as e:
        _fail(e)
    from thawrec.train.dist import current

    if current().is_main:  # under torchrun every rank has the same metrics: print once
        _print_metrics(metrics)
        console.print(f"run folder: {cfg.out}")


@app.command(name="eval")
def eval_cmd(run_dir: Path = typer.Argument(..., help="A folder written by `thawrec train`."),
             verbose: bool = typer.Option(False, "--verbose", "-v")) -> None:
    """Re-evaluate a trained run on its validation and test splits."""
    _setup(verbose)
    from thawrec.train.run import evaluate_run

    try:
        metrics = evaluate_run(run_dir)
    except ThawrecError as e:
        _fail(e)
    _print_metrics(metrics)


def _print_metrics(metrics: dict) -> None:
    t = Table(title=f"metrics on {metrics.get('dataset')}")
    for c in ("part", "group", "AUC", "GAUC", "LogLoss"):
        t.add_column(c)
    for part in ("valid", "test"):
        for g, m in metrics.get(part, {}).items():
            t.add_row(part, g, f"{m['auc']:.4f}", f"{m['gauc']:.4f}", f"{m['logloss']:.4f}")
    console.print(t)


# ----------------------------------------------------------------------------------------------
@data_app.command("import")
def data_import(
    fmt: str = typer.Argument(..., metavar="FORMAT", help="ml-100k, ml-1m, ml-20m, recbole, tabular, taobao-ad or "
                                                          "amazon."),
    src: Path = typer.Argument(..., help="Source folder (or file, for tabular)."),
    out: Path = typer.Option(..., "--out", help="Output dataset folder."),
    user_col: Optional[str] = typer.Option(None, "--user-col"),
    item_col: Optional[str] = typer.Option(None, "--item-col"),
    rating_col: Optional[str] = typer.Option(None, "--rating-col"),
    ts_col: Optional[str] = typer.Option(None, "--ts-col"),
    label_col: Optional[str] = typer.Option(None, "--label-col"),
    positive_threshold: Optional[float] = typer.Option(None, "--positive-threshold"),
    item_tags_col: Optional[str] = typer.Option(None, "--item-tags-col"),
    tag_sep: Optional[str] = typer.Option(None, "--tag-sep"),
    user_attr_cols: Optional[str] = typer.Option(None, "--user-attr-cols", help="Comma-separated."),
    behaviors: Optional[bool] = typer.Option(None, "--behaviors/--no-behaviors",
                                             help="taobao-ad: import behavior_log.csv (default: yes, if present)."),
    max_behavior_rows: Optional[int] = typer.Option(None, "--max-behavior-rows",
                                                    help="taobao-ad: read only the first N behaviour rows (the full "
                                                         "log is 700M rows, ~23 GB in memory)."),
    source: Optional[str] = typer.Option(None, "--source", help="amazon: source-domain category (files in SRC) or "
                                                                "its review file (default Books)."),
    target: Optional[str] = typer.Option(None, "--target", help="amazon: target-domain category or review file "
                                                                "(default Movies_and_TV)."),
    source_meta: Optional[str] = typer.Option(None, "--source-meta", help="amazon: source metadata file (default "
                                                                          "meta_<Category>.json(.gz) beside the reviews)."),
    target_meta: Optional[str] = typer.Option(None, "--target-meta", help="amazon: target metadata file."),
    max_tags: Optional[int] = typer.Option(None, "--max-tags", help="amazon: tags kept per item, most frequent "
                                                                   "first (default 10, COUPLE's n)."),
    min_tag_freq: Optional[int] = typer.Option(None, "--min-tag-freq", help="amazon: a tag must be on at least "
                                                                           "this many items (default 2)."),
) -> None:
    """Import a real dataset into the canonical format (Parquet + meta.json + feature_map.json)."""
    _setup(False)
    from thawrec.data.sources import import_dataset

    opts = {k: v for k, v in dict(user_col=user_col, item_col=item_col, rating_col=rating_col, ts_col=ts_col,
                                  label_col=label_col, positive_threshold=positive_threshold,
                                  item_tags_col=item_tags_col, tag_sep=tag_sep,
                                  user_attr_cols=user_attr_cols, behaviors=behaviors,
                                  max_behavior_rows=max_behavior_rows, source=source, target=target,
                                  source_meta=source_meta, target_meta=target_meta, max_tags=max_tags,
                                  min_tag_freq=min_tag_freq).items() if v is not None}
    try:
        rep = import_dataset(fmt, src, out, **opts)
    except ThawrecError as e:
        _fail(e)
    _print_import(rep)


def _print_import(rep) -> None:
    console.print(f"[green]imported[/] {rep.n_interactions:,} interactions, {rep.n_users:,} users, "
                  f"{rep.n_items:,} items -> {rep.out} in {rep.seconds:.1f} s")
    filtered = {k: v for k, v in (rep.filtered or {}).items() if v}
    console.print("filtered rows: " + (", ".join(f"{k}: {v}" for k, v in filtered.items()) if filtered else "none"))


@data_app.command("fetch")
def data_fetch(
    name: str = typer.Argument(..., help="ml-100k"),
    out: Path = typer.Option(..., "--out"),
    url: Optional[str] = typer.Option(None, help="Mirror URL (default: the official archive)."),
    checksum: Optional[str] = typer.Option(None, help="Expected checksum of the archive."),
    algo: str = typer.Option("md5", help="md5 or sha256."),
) -> None:
    """Download an official archive, verify its checksum, and import it."""
    _setup(False)
    from thawrec.data.fetch import fetch

    try:
        rep = fetch(name, out, url=url, checksum=checksum, algo=algo)
    except ThawrecError as e:
        _fail(e)
    _print_import(rep)


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(..., "--out"),
    users: Optional[int] = typer.Option(None, "--users"),
    items: Optional[int] = typer.Option(None, "--items"),
    interactions: Optional[int] = typer.Option(None, "--interactions"),
    groups: Optional[int] = typer.Option(None, "--groups"),
    new_user_frac: Optional[float] = typer.Option(None, "--new-user-frac"),
    scenario: Optional[str] = typer.Option(None, "--scenario", help="Plant one paper's mechanism: poso, mail, "
                                                                  "dauc or uie (see thawrec.data.scenarios)."),
    strength: Optional[float] = typer.Option(None, "--strength", help="Scenario strength in [0, 1]; 0 is the null "
                                                                      "world; default: the scenario's documented one."),
    seed: int = typer.Option(0, "--seed", help="World seed."),
) -> None:
    """Generate the planted-structure synthetic cold-start world (ground truth saved beside it)."""
    _setup(False)
    from thawrec.data.scenarios import write_scenario_world
    from thawrec.data.synthetic import SynthConfig, write_world

    kw = {k: v for k, v in dict(n_users=users, n_items=items, n_interactions=interactions, n_groups=groups,
                                new_user_frac=new_user_frac).items() if v is not None}
    t0 = time.perf_counter()
    try:
        if strength is not None and scenario is None:
            raise ThawrecError("--strength needs --scenario. Fix: add --scenario poso|mail|dauc")
        path = (write_scenario_world(scenario, strength, seed, out, **kw) if scenario
                else write_world(SynthConfig(seed=seed, **kw), out))
    except (ThawrecError, TypeError, ValueError) as e:
        _fail(e)
    console.print(f"[green]synthetic world[/] -> {path} in {time.perf_counter() - t0:.1f} s")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
