"""Hydra composition: every group composes, schemas reject wrong types and unknown keys."""
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ConfigKeyError, ValidationError

from tests.conftest import CONFIGS, compose_config

GROUPS = {group: sorted(p.stem for p in (Path(CONFIGS) / group).glob("*.yaml"))
          for group in ("dataset", "model", "attack", "scheme", "logger")}


@pytest.mark.parametrize("dataset", GROUPS["dataset"])
@pytest.mark.parametrize("entry", ["train", "evaluate"])
def test_every_dataset_composes(entry, dataset):
    cfg = compose_config(entry, [f"dataset={dataset}"])
    assert cfg.dataset.name == dataset


@pytest.mark.parametrize("model", GROUPS["model"])
def test_every_model_composes(model):
    architecture = "small_upernet_convnext" if model.startswith("embedded") else model  # shipped weights of it
    assert compose_config("evaluate", [f"model={model}"]).model.name == architecture


@pytest.mark.parametrize("attack", GROUPS["attack"])
def test_every_attack_composes_and_resolves(attack):
    from robust_seg.attacks.registry import resolve_attack
    from robust_seg.radii import parse_radii

    from robust_seg.evaluation.config import check_evaluate_config

    cfg = compose_config("evaluate", [f"attack={attack}"])
    resolve_attack(cfg.attack)
    assert check_evaluate_config(cfg)[0] == parse_radii(cfg.attack.eps)


@pytest.mark.parametrize("scheme", GROUPS["scheme"])
def test_every_scheme_composes(scheme):
    cfg = compose_config("train", [f"scheme={scheme}"])
    assert cfg.scheme.loss.name


def test_scheme_and_loss_compose_independently():
    cfg = compose_config("train", ["scheme=at", "scheme/loss=cals_alm"])
    assert cfg.scheme.adversarial.steps == 5 and cfg.scheme.loss.name == "cals_alm"


def test_radii_written_as_in_the_papers():
    cfg = compose_config("evaluate", ["attack=sea", "attack.eps=[4/255,8/255,0.047]"])
    from robust_seg.radii import parse_radii

    radii = parse_radii(cfg.attack.eps)
    assert [r.value for r in radii] == pytest.approx([4 / 255, 8 / 255, 0.047])
    assert [r.key for r in radii] == ["4/255", "8/255", "0.047"]
    assert compose_config("evaluate", ["attack.eps=8/255"]).attack.eps == "8/255"


@pytest.mark.parametrize("override, error", [
    ("batch_size=abc", ValidationError),
    ("dataset.num_classes=many", ValidationError),
    ("dataset.colour=red", ConfigKeyError),
    ("model.depth=3", ConfigKeyError),
])
def test_schema_rejects_wrong_types_and_unknown_keys(override, error):
    with pytest.raises((ConfigCompositionException, error)):
        compose_config("evaluate", [override])


def test_unknown_attack_option_is_one_clear_line():
    from robust_seg.attacks.registry import resolve_attack
    from robust_seg.errors import ConfigError

    cfg = compose_config("evaluate", ["attack=sea", "+attack.options.iters=3"])
    with pytest.raises(ConfigError, match="attack.options.iters: not an option of sea"):
        resolve_attack(cfg.attack)


def test_unknown_key_in_a_group_file_is_rejected(tmp_path):
    import shutil

    from hydra import compose, initialize_config_dir

    from robust_seg.evaluation.config import EvaluateConfig
    from robust_seg.run.config import register_configs

    shutil.copytree(CONFIGS, tmp_path / "configs")
    (tmp_path / "configs" / "dataset" / "broken.yaml").write_text(
        (Path(CONFIGS) / "dataset" / "synthetic.yaml").read_text() + "colour: red\n")
    register_configs(evaluate=EvaluateConfig)
    with initialize_config_dir(config_dir=str(tmp_path / "configs"), version_base="1.3"):
        with pytest.raises(ConfigCompositionException, match="colour"):
            compose(config_name="evaluate", overrides=["dataset=broken"])


def test_the_main_jobs_note_says_the_iterations_actually_run():
    note = compose_config("evaluate", ["experiment=embedded_default", "attack.options.iterations=3"]).attack.note
    assert note.startswith("embedded default: 3 APGD iterations per loss instead of the paper's 300")


def test_no_config_sets_the_hydra_mode_so_the_command_line_decides_it():
    """robust_seg.run.cli.mode_from_the_command_line skips Hydra's composition that only reads ``hydra.mode``: valid
    while no config sets it. A command line that sets it gets Hydra's own reading."""
    import yaml
    from hydra._internal.hydra import Hydra

    from robust_seg.run.cli import mode_from_the_command_line

    for path in Path(CONFIGS).rglob("*.yaml"):
        for document in yaml.safe_load_all(path.read_text()):
            hydra_settings = (document or {}).get("hydra") or {}
            assert "mode" not in hydra_settings, f"{path} sets hydra.mode"
    original = Hydra.get_mode
    with mode_from_the_command_line(["attack=sea", "-m"]):
        assert Hydra.get_mode is not original and Hydra.get_mode(None, "evaluate", []) is None
    assert Hydra.get_mode is original
    for written in ("hydra.mode=MULTIRUN", "++hydra.mode=RUN"):
        with mode_from_the_command_line(["attack=sea", written]):
            assert Hydra.get_mode is original
