"""Settings come from defaults < TOML file < CAPTIOND_* < flags, and
`captiond config show` prints them, secrets masked."""

from __future__ import annotations

import argparse
import subprocess
from pathlib import Path

import pytest

from server.cli import config_from_args, parse_args
from server.config_layers import MASK, ConfigError, apply_layers, read_file, render, tomllib
from server.store import Retention
from tests.server.test_cli import CAPTIOND, ROOT

FILE = """
port = 1111
[batching]
max_batch_size = 8
max_wait_ms = 5.0
[endpointing]
end_silence_ms = 500
[admission]
calibrate = false
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "captiond.toml"
    path.write_text(FILE)
    return path


def test_each_layer_overrides_the_one_before(config_file):
    env = {"CAPTIOND_PORT": "2222", "CAPTIOND_MAX_BATCH_SIZE": "16"}
    args = parse_args(["serve", "--config", str(config_file), "--max-batch-size", "32"], env)
    config = config_from_args(args)
    assert config.port == 2222  # environment over file
    assert config.batching.max_batch_size == 32  # flag over environment
    assert config.batching.max_wait_ms == 5.0  # file over default
    assert config.endpoint.end_silence_ms == 500
    assert config.calibrate is False  # a flag's setting by its own name
    assert config.host == "127.0.0.1"  # built-in default


def test_config_may_come_before_the_command_or_from_the_environment(config_file):
    before = parse_args(["--config", str(config_file), "serve"], {})
    from_env = parse_args(["serve"], {"CAPTIOND_CONFIG": str(config_file)})
    assert before.port == from_env.port == 1111


def test_config_show_prints_valid_toml_with_each_source(config_file):
    shown = subprocess.run(
        [*CAPTIOND, "--config", str(config_file), "config", "show", "--port", "3333"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"CAPTIOND_MAX_WAIT_MS": "7.5", "PATH": "/usr/bin:/bin"})
    assert shown.returncode == 0, shown.stderr
    settings = tomllib.loads(shown.stdout)
    assert settings["port"] == 3333 and settings["max_wait_ms"] == 7.5
    assert settings["max_batch_size"] == 8 and settings["calibrate"] is False
    assert "port = 3333  # command line" in shown.stdout
    assert "max_wait_ms = 7.5  # CAPTIOND_MAX_WAIT_MS" in shown.stdout
    assert f"max_batch_size = 8  # file {config_file}" in shown.stdout


def test_secrets_are_masked_in_config_show(tmp_path):
    # Access control adds such options; any setting named *token*, *secret*,
    # *key* or *password* is masked, wherever it came from.
    parser = argparse.ArgumentParser()
    for option in ("--admin-token", "--tls-key", "--db-password", "--room"):
        parser.add_argument(option)
    settings = {"admin_token": "file-token-123", "room": "hall"}
    origins = apply_layers([parser], settings, "f.toml", {"CAPTIOND_TLS_KEY": "pem-456"})
    args = parser.parse_args(["--db-password", "flag-pw-789"])
    shown = render([parser], args, origins)
    for secret in ("file-token-123", "pem-456", "flag-pw-789"):
        assert secret not in shown
    assert shown.count(MASK) == 3
    assert tomllib.loads(shown)["room"] == "hall"


@pytest.mark.parametrize("env, text, message", [
    ({"CAPTIOND_PORT": "ten"}, "", "CAPTIOND_PORT: invalid value 'ten' for --port"),
    ({"CAPTIOND_DEVICE": "tpu"}, "", "--device must be one of"),
    ({"CAPTIOND_CALIBRATE": "maybe"}, "", "--no-calibrate takes true or false"),
    ({}, "max_batch = 3\n", "unknown setting(s) max_batch"),
    ({}, "port = \n", "is not valid TOML"),
    ({}, '[retention.rooms."x"]\nkeep_weeks = 2\n', "takes keep_days and keep_finals"),
    ({}, '[retention.rooms."x"]\nkeep_days = "soon"\n', "days takes a number >= 0 or forever"),
])
def test_bad_settings_stop_with_a_message_naming_them(tmp_path, env, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    shown = subprocess.run([*CAPTIOND, "config", "show", "--config", str(path)], cwd=ROOT,
                           capture_output=True, text=True, timeout=60,
                           env={**env, "PATH": "/usr/bin:/bin"})
    assert shown.returncode == 2 and message in shown.stderr


ROOM_RETENTION = """
[retention]
keep_days = 30
keep_finals = 1000
[retention.rooms."board"]
keep_days = "forever"
keep_finals = "forever"
[retention.rooms."standup"]
keep_days = 7
"""


def test_rooms_keep_their_own_retention_from_the_file_and_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(ROOM_RETENTION)
    args = parse_args(["serve", "--config", str(path), "--room-retention", "standup:finals=5",
                       "--room-retention", "hall:forever"], {})
    expected = Retention(30.0, 1000, rooms={
        "board": Retention(None, None), "standup": Retention(7.0, 5),
        "hall": Retention(None, None)})
    assert config_from_args(args).rooms.retention == expected
    # config show names them, and what it prints is a config file that means the same
    shown = render(args.parsers[:2], args, args.origins)
    assert tomllib.loads(shown)["room_retention"] == [
        "board:days=forever,finals=forever", "standup:days=7", "standup:finals=5",
        "hall:forever"]
    path.write_text(shown)
    again = parse_args(["serve", "--config", str(path)], {})
    assert config_from_args(again).rooms.retention == expected


def test_the_example_file_names_only_real_settings():
    example = read_file(str(ROOT / "captiond.example.toml"))
    args = parse_args(["serve", "--config", str(ROOT / "captiond.example.toml")], {})
    assert args.port == example["port"] and args.engine == example["engine"]


def test_a_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        read_file(str(tmp_path / "absent.toml"))
