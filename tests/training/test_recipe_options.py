"""The recipe's command-line options, shared by `python -m training.finetune`,
`benchmarks/loso_networks.py train` and `roadwork train backbone`, map onto FinetuneConfig."""

import argparse

import pytest
from typer.testing import CliRunner

from roadwork.cli import app
from training.finetune import RECIPE_OPTIONS, FinetuneConfig, add_recipe_options, recipe_config


def _parse(*argv: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    add_recipe_options(ap)
    return ap.parse_args(list(argv))


def test_no_options_give_the_default_recipe():
    assert recipe_config(_parse()) == FinetuneConfig()


def test_each_option_sets_its_field_with_the_fields_type():
    cfg = recipe_config(
        _parse("--lr", "1e-4", "--freeze-bn", "--epochs", "3", "--paste-prob", "0.5", "--paste-into", "gtsdb, camvid"),
        folds=3,
    )
    assert (cfg.lr, cfg.freeze_bn, cfg.epochs, cfg.paste_prob) == (1e-4, True, 3, 0.5)
    assert cfg.paste_into == ("gtsdb", "camvid")
    assert cfg.folds == 3


def test_a_value_of_the_wrong_type_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        _parse("--epochs", "three")
    assert "--epochs: invalid int value: 'three'" in capsys.readouterr().err


def test_a_source_that_is_not_a_vehicle_camera_is_refused_with_its_name():
    with pytest.raises(ValueError, match="paste_into: \\['coco'\\] are not vehicle-camera sources"):
        recipe_config(_parse("--paste-into", "coco"))


@pytest.mark.parametrize("lr", ["0", "-1e-4"])
def test_a_learning_rate_that_is_not_positive_is_refused_before_training(lr):
    # a zero rate would train nothing and report a network; a negative one would climb the loss
    with pytest.raises(ValueError, match=f"lr is a positive learning rate, got {float(lr)}"):
        recipe_config(_parse(f"--lr={lr}"))


def test_the_product_command_takes_every_recipe_option_with_the_recipes_default(monkeypatch):
    # `roadwork train backbone` builds the same FinetuneConfig from the same flags, so a recipe
    # measured with `python -m training.finetune` can be made with the product command
    import training.finetune

    seen = {}

    def fake_train_backbone(ds, out, head, cfg, device, voters):
        seen["cfg"] = cfg
        return {"checkpoint": str(out), "head": str(head), "seconds": 0}

    monkeypatch.setattr(training.finetune, "train_backbone", fake_train_backbone)
    monkeypatch.setattr("roadwork.cli._load_data", lambda *a: None)
    flags = ["--freeze-bn", "--lr", "1e-4", "--paste-into", "gtsdb", "--paste-prob", "0.3", "--probe-epochs", "2"]
    result = CliRunner().invoke(app, ["train", "backbone", "--data", ".", "--folds", "3", *flags])
    assert result.exit_code == 0, result.output
    assert seen["cfg"] == recipe_config(_parse(*flags, "--workers", "2"), folds=3)
    # and its help lists each of them
    help_text = CliRunner().invoke(app, ["train", "backbone", "--help"], env={"COLUMNS": "200"}).output
    assert all("--" + name.replace("_", "-") in help_text for name in RECIPE_OPTIONS)


def test_a_share_outside_0_to_1_is_refused_by_the_product_command_with_the_field_named():
    result = CliRunner().invoke(app, ["train", "backbone", "--data", ".", "--erase-prob", "1.5"])
    assert result.exit_code != 0 and "erase_prob is a probability in [0, 1], got 1.5" in result.output


def test_a_recipe_that_trains_no_epoch_is_refused_unless_the_probe_trains():
    with pytest.raises(ValueError, match="epochs: train at least one epoch"):
        recipe_config(_parse("--epochs", "0"))
    assert recipe_config(_parse("--epochs", "0", "--probe-epochs", "2")).probe_epochs == 2
