"""`captiond models download|list` against a hub on localhost (fake_hub.py).

What this proves: our command drives modelscope's and huggingface_hub's own
download code over their HTTP APIs (as far as the fake serves them), puts the
files where it says, prints a serve command that names them, and finds the
downloads again offline with the libraries' local-files-only lookup. What it
does not prove: that the real hubs still answer the way the fake does.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.server.fake_hub import FakeHub
from tests.server.test_cli import CAPTIOND, ROOT

MODELS = ["--online-model", "org/online", "--offline-model", "none", "--punc-model", "org/punc"]


@pytest.fixture
def hub(test_models_dir: Path):
    with FakeHub({"org/online": test_models_dir / "paraformer-streaming",
                  "org/punc": test_models_dir / "ct-punc"}) as hub:
        yield hub


def captiond(hub: FakeHub, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(MODELSCOPE_ENDPOINT=hub.url, HF_ENDPOINT=hub.url, NO_PROXY="127.0.0.1",
               MODELSCOPE_CACHE=str(home / "modelscope"), HF_HOME=str(home / "hf"),
               HF_HUB_DISABLE_TELEMETRY="1")
    return subprocess.run([*CAPTIOND, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=180)


def same_files(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    return files and all((b / f).read_bytes() == (a / f).read_bytes() for f in files)


@pytest.mark.parametrize("hub_name", ["modelscope", "huggingface"])
def test_download_into_a_directory_prints_a_serve_command_naming_it(
        hub, test_models_dir, tmp_path, hub_name):
    target = tmp_path / "models"
    done = captiond(hub, tmp_path, "models", "download", "--hub", hub_name, "--dir",
                    str(target), *MODELS)
    assert done.returncode == 0, done.stderr
    assert same_files(test_models_dir / "paraformer-streaming", target / "online")
    assert same_files(test_models_dir / "ct-punc", target / "punc")
    assert (f"captiond serve --online-model {target / 'online'} "
            f"--punc-model {target / 'punc'}") in done.stdout
    listed = captiond(hub, tmp_path, "models", "list", "--dir", str(target), *MODELS)
    assert str(target / "online") in listed.stdout and str(target / "punc") in listed.stdout


@pytest.mark.parametrize("hub_name", ["modelscope", "huggingface"])
def test_models_in_the_hub_cache_are_found_offline_after_download(
        hub, test_models_dir, tmp_path, hub_name):
    before = captiond(hub, tmp_path, "models", "list", *MODELS)
    assert before.returncode == 1 and before.stdout.count("not downloaded") == 2
    done = captiond(hub, tmp_path, "models", "download", "--hub", hub_name, *MODELS)
    assert done.returncode == 0, done.stderr
    requests = len(hub.requests)
    after = captiond(hub, tmp_path, "models", "list", *MODELS)
    assert after.returncode == 0 and "not downloaded" not in after.stdout
    assert len(hub.requests) == requests  # found offline: not one request to the hub
    cached = [Path(line.strip()) for line in after.stdout.splitlines()
              if line.startswith(" ") and str(tmp_path) in line]
    assert len(cached) == 2
    assert same_files(test_models_dir / "ct-punc", cached[1])


def test_a_download_failure_names_the_model_and_the_hub(hub, tmp_path):
    done = captiond(hub, tmp_path, "models", "download", "--online-model", "org/absent",
                    "--offline-model", "none", "--punc-model", "none")
    assert done.returncode == 1
    assert "downloading org/absent from modelscope failed" in done.stderr
