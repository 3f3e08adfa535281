"""Skip the Ollama example when no OpenAI-compatible server answers.

The workflow files of this folder call a local server (``provider.base_url``,
Ollama's ``http://localhost:11434/v1`` by default). When nothing listens
there, every run would fail after its retries; instead, each item is marked
skipped with the reason, so ``pytest --promptab examples/`` passes on a
machine without Ollama. A skipped item's run is never sent.

The probe is one ``GET {base_url}/models`` per server, with a 0.5 s timeout:
any HTTP answer (even 401 or 404) means a server is there. With
``--promptab-cache replay`` there is no probe: a replay never calls out.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
PROBE_TIMEOUT_S = 0.5
_answers: dict[str, bool] = {}


def server_answers(base_url: str) -> bool:
    """True when an HTTP server answers at ``base_url`` (probed once)."""
    if base_url not in _answers:
        try:
            with urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=PROBE_TIMEOUT_S):
                pass
            _answers[base_url] = True
        except urllib.error.HTTPError:
            _answers[base_url] = True  # it answered, with an error: a server is there
        except (OSError, ValueError):
            _answers[base_url] = False  # refused, timed out, no such host, bad URL
    return _answers[base_url]


def base_url_of(path: Path) -> str | None:
    """The ``provider.base_url`` of a workflow file, if it sets one."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    provider = data.get("provider") if isinstance(data, dict) else None
    url = provider.get("base_url") if isinstance(provider, dict) else None
    return url if isinstance(url, str) else None


def replaying(config: pytest.Config) -> bool:
    """``--promptab-cache replay`` never calls out: no server is needed."""
    mode = config.getoption("promptab_cache", default=None) or config.getini("promptab_cache")
    return mode == "replay"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if replaying(config):
        return
    for item in items:
        path = Path(item.path)
        if path.parent != HERE or path.suffix not in (".yaml", ".yml"):
            continue
        url = base_url_of(path)
        if url and not server_answers(url):
            item.add_marker(
                pytest.mark.skip(
                    reason=f"no OpenAI-compatible server at {url}; start Ollama (ollama serve) to run this example"
                )
            )
