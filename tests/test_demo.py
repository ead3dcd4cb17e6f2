"""`thawrec demo` is the README's first result: it must run end to end and say what it measured."""

from __future__ import annotations

from thawrec.suites import demo


def test_demo_writes_its_table_and_plot_with_floor_and_ceilings(tmp_path):
    world = {"n_users": 500, "n_items": 300, "n_interactions": 15_000}
    payload = demo.run(None, tmp_path, [0], epochs=1, world=world)
    text = (tmp_path / "demo.md").read_text()
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    for name in (*demo.MODELS, demo.FLOOR, demo.TRUE, demo.ORACLE):
        assert name in text, name
    assert "## new users" in text and "## old users" in text
    assert "MDE" in text  # the gains table states what a null result rules out
    models = {r["model"] for r in payload["rows"] if r["group"] == "new"}
    assert set(demo.MODELS) <= models
