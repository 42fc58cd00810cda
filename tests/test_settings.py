"""Settings refuse what they do not understand: start-up stops with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from meterway.settings import Settings, SettingsError


def test_a_misspelled_variable_is_refused_by_name() -> None:
    with pytest.raises(SettingsError, match="METERWAY_POOL_STANDBYY"):
        Settings.from_env({"METERWAY_POOL_STANDBYY": "1"})


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("true", True), ("Yes", True), ("on", True),
                                            ("0", False), ("false", False), ("no", False), ("OFF", False)])
def test_booleans_take_the_usual_spellings(raw: str, value: bool) -> None:
    assert Settings.from_env({"METERWAY_POOL_STANDBY": raw}).pool.standby is value


@pytest.mark.parametrize("raw", ["maybe", "2", "enabled", "tru"])
def test_any_other_boolean_is_refused(raw: str) -> None:
    with pytest.raises(SettingsError, match=f"METERWAY_POOL_STANDBY={raw!r} is not a boolean"):
        Settings.from_env({"METERWAY_POOL_STANDBY": raw})


def test_client_and_test_variables_are_not_settings_errors() -> None:
    Settings.from_env({"METERWAY_URL": "http://x", "METERWAY_API_KEY": "k", "METERWAY_TEST_STORE": "/s"})


def test_serve_stops_with_the_message_and_no_traceback() -> None:
    env = {**os.environ, "METERWAY_PORTT": "9"}
    result = subprocess.run([sys.executable, "-m", "service.cli", "serve"], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1 and "meterway: unknown setting METERWAY_PORTT" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("depth", ["0", "513"])
def test_the_json_depth_limit_is_bounded(depth: str) -> None:
    with pytest.raises(SettingsError, match="METERWAY_JSON_MAX_DEPTH"):
        Settings.from_env({"METERWAY_JSON_MAX_DEPTH": depth})
