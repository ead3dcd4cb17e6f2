"""The `thawrec` CLI end to end on small real inputs: synth, import, bench, train, resume, eval."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from thawrec.cli import app

runner = CliRunner()


def invoke(*args: str):
    res = runner.invoke(app, [str(a) for a in args])
    return res


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    res = invoke("data", "synth", "--out", out, "--users", 400, "--items", 200, "--interactions", 12000, "--seed", 1)
    assert res.exit_code == 0, res.output
    return out


def test_bench_base_writes_results_report_and_plot(tiny_world, tmp_path):
    out = tmp_path / "bench"
    res = invoke("bench", "base", "--data", tiny_world, "--seeds", 2, "--epochs", 1, "--out", out)
    assert res.exit_code == 0, res.output
    payload = json.loads((out / "results.json").read_text())
    assert payload["suite"] == "base" and payload["seeds"] == [0, 1]
    keys = {"model", "task", "group", "metric", "mean", "std", "values", "baseline", "p_value", "rel_improvement",
            "delta", "se", "ci_low", "ci_high", "mde", "n_users", "variance", "df"}
    assert all(set(r) == keys for r in payload["rows"])
    row = next(r for r in payload["rows"] if (r["model"], r["group"], r["metric"]) == ("BaseDNN", "new", "gauc"))
    assert row["n_users"] > 0 and row["mde"] > 0 and row["ci_low"] < row["delta"] < row["ci_high"]
    assert payload["test_counts"]["0"]["new"]["users"] > 0  # every table states its n
    groups = {(r["model"], r["group"]) for r in payload["rows"]}
    assert {("BaseDNN", "new"), ("BaseDNN", "regular"), ("ItemPop", "new")} <= groups
    dnn_auc = next(r for r in payload["rows"] if (r["model"], r["group"], r["metric"]) == ("BaseDNN", "all", "auc"))
    assert len(dnn_auc["values"]) == 2 and 0.5 < dnn_auc["mean"] <= 1.0 and dnn_auc["baseline"] == "ItemPop"
    assert (out / "training_curves.png").stat().st_size > 1000
    assert "| BaseDNN |" in (out / "report.md").read_text()


def test_recbole_folder_benches_directly_and_progress_reads_well_in_a_log(ml100k_mini_dir, tmp_path):
    """A RecBole folder (the in-repo ML-100K look-alike) imports and benches without a prior import;
    not on a terminal, progress is one plain line per epoch and per (model, seed), no bars."""
    res = invoke("data", "import", "recbole", ml100k_mini_dir, "--out", tmp_path / "ml")
    assert res.exit_code == 0, res.output
    assert "3,000 interactions" in res.output
    res = invoke("bench", "base", "--data", ml100k_mini_dir, "--seeds", 1, "--epochs", 2, "--out", tmp_path / "b")
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert sum("BaseDNN epoch" in x for x in lines) == 2 and any("seed 0 BaseDNN: done" in x for x in lines)
    assert not any(x.strip() == "" and i + 1 < len(lines) and lines[i + 1].strip() == "" for i, x in enumerate(lines))
    assert json.loads((tmp_path / "b" / "results.json").read_text())["dataset"] == "ml-100k-mini"


def test_import_real_ml100k_recbole(ml100k_dir, tmp_path):
    res = invoke("data", "import", "recbole", ml100k_dir, "--out", tmp_path / "ml")
    assert res.exit_code == 0, res.output
    assert "100,000 interactions" in res.output
    meta = json.loads((tmp_path / "ml" / "meta.json").read_text())
    assert meta["n_users"] == 943 and meta["n_items"] == 1682


def test_train_resume_and_eval(tiny_world, tmp_path):
    cfg = {"data": str(tiny_world), "out": str(tmp_path / "run"), "model": "base_dnn",
           "model_cfg": {"embedding_dim": 8, "hidden": [32, 16]},
           "train": {"epochs": 1, "batch_size": 512, "progress": False, "seed": 0}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = invoke("train", path)
    assert res.exit_code == 0, res.output
    first = (tmp_path / "run" / "train_log.csv").read_text().strip().splitlines()
    res = invoke("train", path, "--epochs", 2, "--resume")
    assert res.exit_code == 0, res.output
    log = (tmp_path / "run" / "train_log.csv").read_text().strip().splitlines()
    assert len(log) == 3  # header + epochs 0 and 1
    # epoch 0 was not re-run: its row, measured wall-seconds included, is the first run's exactly
    assert log[1] == first[1]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    res = invoke("eval", tmp_path / "run")
    assert res.exit_code == 0, res.output
    assert f"{metrics['test']['all']['auc']:.4f}" in res.output  # eval reproduces train's test metrics


@pytest.mark.parametrize("args, needle", [
    (("bench", "nosuch"), "unknown suite"),
    (("data", "import", "nosuch", "."), "nosuch"),
    (("eval", "/nonexistent/run"), "not a finished run"),
    (("bench", "base", "--data", "/nonexistent/data", "--seeds", 1), "not a dataset folder"),
])
def test_errors_exit_2_with_a_fix(args, needle, tmp_path):
    if args[:2] == ("data", "import"):
        args = args + ("--out", str(tmp_path / "o"))
    res = invoke(*args)
    assert res.exit_code == 2, res.output
    assert needle in res.output


def test_bench_poso_table5_table1_and_throughput(tiny_world, tmp_path):
    out = tmp_path / "poso"
    res = invoke("bench", "poso", "--data", tiny_world, "--seeds", 2, "--epochs", 1, "--out", out,
                 "--sections", "main,baselines")
    assert res.exit_code == 0, res.output
    payload = json.loads((out / "results.json").read_text())
    models = {r["model"] for r in payload["rows"]}
    assert models == {"Base (MHA+MMoE)", "POSO(MLP)", "POSO(MHA)", "POSO(MMoE)", "POSO(All Combined)",
                      "MeLU", "Meta-Embedding", "MWUF", "Popularity (floor)",
                      "Oracle (planted click model)"}  # a written synthetic world keeps its ground truth
    assert {r["group"] for r in payload["rows"]} == {"early", "established"}  # movielens protocol: all unseen
    assert {r["task"] for r in payload["rows"]} == {"favorite", "satisfied"}
    whole = {c["model"]: c for c in payload["costs"] if c["module"] == "whole model"}
    assert whole["POSO(All Combined)"]["params"] > whole["Base (MHA+MMoE)"]["params"]
    assert whole["POSO(MMoE)"]["flops_per_sample"] > whole["Base (MHA+MMoE)"]["flops_per_sample"]
    assert "Table 5 style" in (out / "report.md").read_text()
    gates = payload["value_gates"]["per_seed"][0]  # Fig. 4: one row per AVC bucket, one column per value set
    assert len(gates) >= 2 and len(gates[0]) == 4 and all(0 < g < 2 for row in gates for g in row)
    assert (out / "fig4_value_gates.png").stat().st_size > 1000


def test_bench_poso_new_users_protocol_with_ablations(tiny_world, tmp_path):
    """Table 2 (new vs regular users), Table 6 (codes) and Table 7 (MHA settings) in one report."""
    out = tmp_path / "poso_new"
    res = invoke("bench", "poso", "--data", tiny_world, "--protocol", "new-users", "--seeds", 2, "--epochs", 1,
                 "--out", out, "--sections", "pc,mha,items", "--models",
                 "PC: is-new-user,POSO(All Combined),MHA: Q(i); K(i); V(i); N=4,POSO(MHA),item-age PC: POSO(MMoE)")
    assert res.exit_code == 0, res.output
    payload = json.loads((out / "results.json").read_text())
    assert payload["protocol_name"] == "new-users" and payload["split"]["0"]["train_new_user_rows"] > 0
    assert {"new", "regular"} <= {r["group"] for r in payload["rows"]}
    text = (out / "report.md").read_text()
    assert "Table 2 style" in text and "Table 6 style" in text and "Table 7 style" in text
    assert "Table 3 style" in text and "| item-age PC: POSO(MMoE) |" in text
    assert {"new items", "regular items"} <= {r["group"] for r in payload["rows"]}
    row = next(r for r in payload["rows"] if r["model"] == "PC: is-new-user" and r["group"] == "new")
    assert row["baseline"] == "Base (MHA+MMoE)" and len(row["values"]) == 2


def test_bench_mail_tables_and_figures(tiny_world, tmp_path):
    out = tmp_path / "mail"
    res = invoke("bench", "mail", "--data", tiny_world, "--seeds", 2, "--epochs", 1, "--out", out,
                 "--models", "LLAE,MetaEmb,MAIL-Base,MAIL-DMR,MAIL-POSO")
    assert res.exit_code == 0, res.output
    payload = json.loads((out / "results.json").read_text())
    by = {(r["model"], r["group"], r["metric"]): r for r in payload["rows"]}
    assert {m for m, _, _ in by} == {"BaseDNN", "EmbLR", "LLAE", "MetaEmb", "MAIL-Base", "DMR", "MAIL-DMR",
                                     "POSO-Base", "MAIL-POSO", "Popularity (floor)", "Oracle (planted click model)",
                                     "BaseDNN + true behaviour (ceiling)"}  # each model's own base runs too
    assert by[("MAIL-Base", "new", "auc")]["baseline"] == "BaseDNN" and by[("LLAE", "old", "gauc")]["baseline"] == "EmbLR"
    assert by[("MAIL-DMR", "new", "gauc")]["baseline"] == "DMR" and by[("MetaEmb", "new", "auc")]["baseline"] == "BaseDNN"
    assert by[("MAIL-POSO", "old", "auc")]["baseline"] == "POSO-Base"
    h2h = {(r["model"], r["versus"]) for r in payload["head_to_head"]}
    assert h2h == {("MAIL-Base", "MetaEmb"), ("MAIL-DMR", "MAIL-Base")}
    split = payload["split"]["1"]  # masking and split per seed: the masking seed is the run seed
    assert split["mask_new_users"]["frac"] == 0.4 and split["mask_new_users"]["seed"] == 1
    assert split["params"]["by"] == "time"
    assert payload["split"]["0"]["mask_new_users"]["seed"] == 0
    assert set(payload["loss_curves"]) == {"L_a", "L_v", "L_d (MMD)", "L_rt"}
    text = (out / "report.md").read_text()
    assert "Table 2 style" in text and "Table 3 style" in text and "Model-agnostic check" in text
    assert "| MetaEmb |" in text and "| MAIL-DMR |" in text and "Head to head" in text
    assert (out / "fig4_losses.png").stat().st_size > 1000 and (out / "fig5_projection.png").stat().st_size > 1000


def test_bench_dauc_tables_nmi_and_figures(tiny_world, tmp_path):
    """Every method of Table 2 and 3 runs end to end on a tiny synthetic world (2 epochs)."""
    from thawrec.suites import dauc

    out = tmp_path / "dauc"
    payload = dauc.run(None, out, [0, 1], epochs=2, n_clusters=8, k=10,
                       synth={"n_users": 400, "n_items": 200, "n_interactions": 12000, "seed": 1})
    by = {(r["model"], r["group"], r["metric"]): r for r in payload["rows"]}
    assert {m for m, _, _ in by} == set(dauc.ALL) | {dauc.FLOOR, dauc.ORACLE, dauc.TASTE_ORACLE}
    assert ("k-means", "cold-start", "recall@10 (size-matched random)") in by
    assert by[("k-means", "cold-start", "recall@10")]["baseline"] == "DAUC"
    assert len(by[("DCCAE", "overall", "ndcg@10")]["values"]) == 2
    assert ("Random", "all users", "nmi") in by and by[("Random", "all users", "nmi")]["mean"] < 0.2
    assert {r["metric"] for r in payload["improvement"]} == {"recall@10", "ndcg@10"}
    text = (out / "report.md").read_text()
    assert "Table 2 style" in text and "Table 3 style" in text and "NMI" in text
    assert (out / "fig3_active_share.png").stat().st_size > 1000
    assert "Cluster #" in (out / "case_study.md").read_text()
    res = invoke("bench", "dauc", "--seeds", 1, "--models", "nope", "--out", tmp_path / "x")
    assert res.exit_code != 0 and "unknown method" in res.output


def test_a_ratings_log_without_user_attributes_runs_every_suite_that_can(ml100k_mini_dir, tmp_path):
    """As a new user would: a sparse ratings log (15 a day over 200 days) with no users table.
    Baselines that need attributes are skipped with a note, the rest runs, the replay's windows
    adapt to the density (no method scores an empty recall), and the report says what each filter
    removed."""
    import shutil

    src = tmp_path / "log"
    src.mkdir()
    for f in ("ml-100k.inter", "ml-100k.item"):
        shutil.copy(ml100k_mini_dir / f, src / f)
    res = invoke("bench", "dauc", "--data", src, "--seeds", 1, "--epochs", 1, "--out", tmp_path / "d",
                 "--models", "k-means,DAUC", "--clusters", 4)
    assert res.exit_code == 0, res.output
    payload = json.loads((tmp_path / "d" / "results.json").read_text())
    assert "Profile" not in {r["model"] for r in payload["rows"]}
    recall = {r["model"]: r["mean"] for r in payload["rows"] if r["group"] == "overall" and r["metric"] == "recall@20"}
    assert recall["DAUC"] > 0 and recall["k-means"] > 0
    text = (tmp_path / "d" / "report.md").read_text()
    assert "without a click in their slice are not scored" in text and "belong to users the view filters removed" in text
    res = invoke("bench", "poso", "--data", src, "--seeds", 1, "--epochs", 1, "--out", tmp_path / "p")
    assert res.exit_code == 0, res.output
    payload = json.loads((tmp_path / "p" / "results.json").read_text())
    assert set(payload["skipped"]) == {"Meta-Embedding", "MWUF", "Oracle (planted click model)"}
    assert "MeLU" in {r["model"] for r in payload["rows"]} and "Skipped" in (tmp_path / "p" / "report.md").read_text()
