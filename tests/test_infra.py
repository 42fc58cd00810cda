"""The deployment files name commands and settings that exist (there is no Docker engine or cluster here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from meterway.settings import describe

INFRA = Path(__file__).resolve().parent.parent / "infra"
SETTINGS = {name for name, _default, _doc in describe()}


def _documents() -> list[tuple[str, dict[str, object]]]:
    docs = []
    for path in [INFRA / "compose.yaml", *sorted((INFRA / "k8s").glob("*.yaml"))]:
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def _commands(node: object) -> list[list[str]]:
    if isinstance(node, dict):
        found = [node["command"]] if isinstance(node.get("command"), list) else []
        return found + [c for value in node.values() for c in _commands(value)]
    if isinstance(node, list):
        return [c for value in node for c in _commands(value)]
    return []


def test_every_setting_the_deployment_sets_exists() -> None:
    text = "\n".join(p.read_text() for p in [INFRA / "compose.yaml", *(INFRA / "k8s").glob("*.yaml")])
    named = set(re.findall(r"\b(METERWAY_[A-Z_]+)\b", text))
    assert named and named <= SETTINGS, named - SETTINGS


@pytest.mark.parametrize("command", sorted({" ".join(c) for _, d in _documents() for c in _commands(d)}))
def test_every_command_the_deployment_runs_exists(command: str) -> None:
    words = command.split()
    if words[0] == "meterway":
        argv = [sys.executable, "-m", "service.cli", *words[1:2], "--help"]
    elif words[:2] == ["python", "-m"]:
        argv = [sys.executable, "-m", words[2], "--help"]
    else:
        return  # images' own commands (nats-server flags)
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
