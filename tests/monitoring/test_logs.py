"""Our log lines survive a library that silences every existing logger (bittensor 10.5 does)."""

import json
import logging

import pytest

from monitoring.logs import configure_logging, current, default_level, parse_level, reapply


@pytest.fixture(autouse=True)
def restore():
    before = current()
    yield
    configure_logging(before.level, before.json, before.explicit)


def test_reapply_undoes_a_library_setting_our_loggers_to_critical(capsys):
    configure_logging("INFO", json_lines=True)
    child = logging.getLogger("miner.some_module")
    child.setLevel(logging.CRITICAL)  # what importing bittensor does to every logger that exists
    reapply()
    child.info("refused input: %s", "not an image")
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["logger"] == "miner.some_module" and line["message"] == "refused input: not an image"
    assert line["level"] == "INFO"


def test_a_commands_default_level_does_not_override_the_users_choice():
    configure_logging("ERROR", explicit=True)
    default_level("INFO")
    assert current().level == "ERROR"
    configure_logging("WARNING")
    default_level("INFO")
    assert current().level == "INFO" and logging.getLogger("miner").level == logging.INFO


def test_unknown_level_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="DEBUG, INFO, WARNING"):
        parse_level("loud")
