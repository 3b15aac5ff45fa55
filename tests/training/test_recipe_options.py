"""The recipe's command-line options, shared by `python -m training.finetune` and
`benchmarks/loso_networks.py train`, map onto FinetuneConfig."""

import argparse

import pytest

from training.finetune import FinetuneConfig, add_recipe_options, recipe_config


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
