from __future__ import annotations

import pytest

from thawrec.config import RunConfig, load_config, save_config
from thawrec.errors import ConfigError


def test_shipped_configs_load():
    from pathlib import Path

    for p in (Path(__file__).resolve().parents[1] / "src/thawrec/configs").glob("*.yaml"):
        cfg = load_config(p)
        assert cfg.model == "base_dnn" and cfg.train.epochs >= 1


def test_round_trip(tmp_path):
    cfg = RunConfig(out=str(tmp_path / "r"))
    cfg.train.epochs = 7
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml").train.epochs == 7


@pytest.mark.parametrize("text, match", [
    ("modle: base_dnn\n", "unknown option"),
    ("train: {epochz: 2}\n", "train: unknown option"),
    ("train: [1, 2\n", "not valid YAML"),
    ("- 1\n- 2\n", "must be a mapping"),
])
def test_bad_configs_name_the_problem(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(p)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
