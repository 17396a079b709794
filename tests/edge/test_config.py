"""Edge configuration: YAML + environment, unknown keys rejected with a readable message, secrets from files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edge.config import ConfigError, EdgeConfig, load_edge_config
from varta.signing import generate_signing_key, key_id, public_key_text

REPO = Path(__file__).resolve().parents[2]

BASE = """\
node_id: pi-17
site: podil
mqtt:
  host: broker.example.org
  port: 8883
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("VARTA_EDGE__"):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.yaml"
    path.write_text(text)
    return path


def test_minimal_file_gets_the_documented_defaults(tmp_path: Path) -> None:
    config = load_edge_config(write(tmp_path, BASE))
    assert (config.node_id, config.site, config.mqtt.host, config.mqtt.port) == (
        "pi-17",
        "podil",
        "broker.example.org",
        8883,
    )
    assert config.outbox.path == Path("var/edge/outbox.db")
    assert config.outbox.max_rows == 200_000
    assert config.outbox.max_bytes == 100 * 1024 * 1024
    assert config.outbox.telemetry_max_age_s == 7 * 86_400
    assert config.outbox.event_max_age_s == 90 * 86_400
    assert config.health.interval_s == 30
    assert config.commands.max_clock_skew_s == 30
    assert config.commands.verify_keys() == []
    assert config.simulator.enabled is False


def test_unknown_key_is_rejected_with_a_readable_message(tmp_path: Path) -> None:
    path = write(tmp_path, BASE + "outbox:\n  max_rowz: 5\nhealth:\n  interval_s: 0.5\n")
    with pytest.raises(ConfigError) as info:
        load_edge_config(path)
    message = str(info.value)
    assert message.splitlines()[0] == f"invalid edge configuration ({path}):"
    assert "  outbox.max_rowz: Extra inputs are not permitted" in message.splitlines()
    assert any(line.startswith("  health.interval_s: ") for line in message.splitlines())


def test_invalid_identifiers_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="node_id"):
        load_edge_config(write(tmp_path, "node_id: Pi/17\nsite: podil\n"))


def test_missing_node_id_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"node_id: Field required"):
        load_edge_config(write(tmp_path, "site: podil\n"))


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARTA_EDGE__MQTT__PORT", "1884")
    monkeypatch.setenv("VARTA_EDGE__NODE_ID", "pi-18")
    monkeypatch.setenv("VARTA_EDGE__HEALTH__INTERVAL_S", "5")
    config = load_edge_config(write(tmp_path, BASE))
    assert config.mqtt.port == 1884
    assert config.mqtt.host == "broker.example.org"  # the rest of the file's mqtt section is kept
    assert config.node_id == "pi-18"
    assert config.health.interval_s == 5


def test_unknown_environment_key_is_rejected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARTA_EDGE__MQTT__HOSTNAME", "typo.example.org")
    with pytest.raises(ConfigError, match=r"mqtt\.hostname: Extra inputs are not permitted"):
        load_edge_config(write(tmp_path, BASE))


def test_mqtt_password_from_a_file(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    config = load_edge_config(write(tmp_path, BASE + f"  username: pi-17\n  password_file: {secret}\n"))
    assert config.mqtt.resolved_password() == "s3cret"
    assert "s3cret" not in repr(config)


def test_mqtt_password_from_the_environment_is_kept_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VARTA_EDGE__MQTT__PASSWORD", "from-env")
    config = load_edge_config(write(tmp_path, BASE))
    assert config.mqtt.resolved_password() == "from-env"
    assert "from-env" not in repr(config) and "from-env" not in config.model_dump_json()


def test_password_and_password_file_together_are_rejected(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("x")
    with pytest.raises(ConfigError, match="either password or password_file"):
        load_edge_config(write(tmp_path, BASE + f"  password: a\n  password_file: {secret}\n"))


def test_central_public_keys_come_from_the_list_and_the_key_file(tmp_path: Path) -> None:
    inline, filed = generate_signing_key().verify_key, generate_signing_key().verify_key
    keys_file = tmp_path / "central.pub"
    keys_file.write_text(f"# central, rotated 2026-11\n\n{public_key_text(filed)}  # new key\n")
    config = load_edge_config(
        write(
            tmp_path,
            BASE + f"commands:\n  central_public_keys: [{public_key_text(inline)}]\n"
            f"  central_public_keys_file: {keys_file}\n",
        )
    )
    assert [key_id(k) for k in config.commands.verify_keys()] == [key_id(inline), key_id(filed)]


def test_a_malformed_public_key_is_reported_with_its_position(tmp_path: Path) -> None:
    keys_file = tmp_path / "central.pub"
    keys_file.write_text("# comment\nabcd\n")
    with pytest.raises(ConfigError, match=r"central\.pub, line 2: an Ed25519 public key has 32 bytes"):
        load_edge_config(write(tmp_path, BASE + f"commands:\n  central_public_keys_file: {keys_file}\n"))
    with pytest.raises(ConfigError, match=r"commands\.central_public_keys: key #1"):
        load_edge_config(write(tmp_path, BASE + "commands:\n  central_public_keys: [abc]\n"))


def test_a_missing_key_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"commands: cannot read .*nope\.pub: No such file"):
        load_edge_config(write(tmp_path, BASE + f"commands:\n  central_public_keys_file: {tmp_path / 'nope.pub'}\n"))


def test_unreadable_or_invalid_files_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_edge_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_edge_config(write(tmp_path, "node_id: [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_edge_config(write(tmp_path, "- a\n- b\n"))


def test_log_level_is_normalised_and_checked(tmp_path: Path) -> None:
    assert load_edge_config(write(tmp_path, BASE + "log_level: debug\n")).log_level == "DEBUG"
    with pytest.raises(ConfigError, match="log_level"):
        load_edge_config(write(tmp_path, BASE + "log_level: loud\n"))


def test_keyword_overrides_win_over_the_file(tmp_path: Path) -> None:
    config = load_edge_config(write(tmp_path, BASE), simulator={"enabled": True, "events_per_s": 50})
    assert config.simulator.enabled and config.simulator.events_per_s == 50


def test_shipped_example_config_is_valid() -> None:
    config = load_edge_config(REPO / "deploy" / "config" / "edge.example.yaml")
    assert isinstance(config, EdgeConfig)
    assert config.mqtt.tls is not None
    assert config.mqtt.password_file == Path("/etc/varta/mqtt.password")
