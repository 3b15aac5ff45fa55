"""Our logging, set by the entrypoint and set again after bittensor is imported.

Importing bittensor 10.5 sets every logger that exists at that moment to CRITICAL, so a miner
that configured logging first said nothing at all under `roadwork serve` (no "ready", no refused
input, no drain). `configure_logging` gives each of our packages one handler of its own (not
propagated to the root logger bittensor rearranges) and clears any level forced on their child
loggers; `reapply()` runs it again with the same settings once bittensor has been imported.
`--log-json` writes one JSON object per line for log shippers.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass

PACKAGES = ("roadwork", "miner", "cascade", "detectors", "consensus", "vlm_tiers", "training", "monitoring")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """{"ts", "level", "logger", "message"[, "exc"]} on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


@dataclass(frozen=True)
class LogSettings:
    level: str = "WARNING"
    json: bool = False
    explicit: bool = False
    """The user chose the level (-v / --log-level): commands keep it instead of their own default."""


_settings = LogSettings()
_handler_tag = "roadwork-handler"


def parse_level(name: str) -> int:
    level = logging.getLevelName(name.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {name!r}; choose DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


def configure_logging(level: str = "WARNING", json_lines: bool = False, explicit: bool = False) -> None:
    """Our packages log at `level` to stderr (text or JSON lines); other libraries stay at WARNING."""
    global _settings
    numeric = parse_level(level)
    _settings = LogSettings(level.upper(), json_lines, explicit)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_handler_tag)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    for name in PACKAGES:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if h.get_name() == _handler_tag]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(numeric)
        logger.propagate = False
        logger.disabled = False
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in PACKAGES and "." in name:
            logger.setLevel(logging.NOTSET)  # inherit from the package logger again
            logger.disabled = False


def reapply() -> None:
    """Run `configure_logging` again with the last settings (after importing bittensor)."""
    configure_logging(_settings.level, _settings.json, _settings.explicit)


def default_level(level: str) -> None:
    """A command's own default (e.g. INFO for `serve`), unless the user chose one."""
    if not _settings.explicit:
        configure_logging(level, _settings.json)


def current() -> LogSettings:
    return _settings
