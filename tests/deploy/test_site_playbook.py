"""site.yml applied for real: every host is a debootstrap'd Debian bookworm reached through the chroot connection.

One community — a broker, central, and an edge node that also drives a kiosk — is set up twice: the first run
succeeds, the second changes nothing. testinfra then looks inside the root filesystems, and systemd-analyze
verifies every unit the roles installed. A canary rollout over three nodes stops at the first one when it fails.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import testinfra
import yaml
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.deploy.rootfs import ANSIBLE_DIR, BIN, ansible_env, new_host

# Setting up a whole community in root filesystems takes minutes (debootstrap once, then two runs of site.yml).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

UNITS = {  # the units the roles install (the Debian packages bring their own)
    "central": ["varta-central.service"],
    "pi-test-1": ["varta-edge.service", "varta-kiosk.service"],
}


def certificate(host: Any, path: str) -> x509.Certificate:
    """A certificate read from inside the host's root filesystem."""
    return x509.load_pem_x509_certificate(host.file(path).content)


def common_name(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def enabled(host: Any, unit: str) -> bool:
    """Whether systemd would start *unit* at boot (``systemctl is-enabled`` works without a running systemd)."""
    return bool(host.run(f"systemctl is-enabled {unit}").stdout.strip() == "enabled")


def write_inventory(path: Path, groups: dict[str, dict[str, Path]]) -> Path:
    """An inventory whose hosts are chroot folders; edge hosts form the site ``test-site``."""
    children: dict[str, Any] = {}
    for group, hosts in groups.items():
        entries = {name: {"ansible_host": str(root)} for name, root in hosts.items()}
        if group == "edge":
            children["edge"] = {"children": {"site_test": {"vars": {"varta_site": "test-site"}, "hosts": entries}}}
        else:
            children[group] = {"hosts": entries}
    data = {
        "all": {
            "vars": {
                "ansible_connection": "community.general.chroot",
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "children": children,
        }
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))  # inventory order is rollout order
    return path


def play(controller: Path, inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """``ansible-playbook site.yml``. Nothing runs in a chroot, so the rollout health check (a node reporting its
    new release to central) is off here."""
    args = [
        str(BIN / "ansible-playbook"),
        "-i",
        str(inventory),
        str(ANSIBLE_DIR / "site.yml"),
        "-e",
        f"varta_wheelhouse={controller / 'wheelhouse'}",
        "-e",
        f"varta_pki_dir={controller / 'pki'}",
        "-e",
        "varta_broker_host=broker.test varta_rollout_health_check=false",
        *extra,
    ]
    return subprocess.run(
        args, check=False, cwd=ANSIBLE_DIR, env=ansible_env(), capture_output=True, text=True, timeout=1800
    )


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP counters per host."""
    result: dict[str, dict[str, int]] = {}
    for line in output.split("PLAY RECAP", 1)[-1].splitlines():
        match = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
        if match:
            result[match.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", match.group(2))}
    return result


@dataclass
class Community:
    hosts: dict[str, Path]
    inventory: Path
    first: subprocess.CompletedProcess[str]
    second: subprocess.CompletedProcess[str]

    def host(self, name: str) -> Any:
        """testinfra's view of *name*, through Ansible's own chroot connection."""
        return testinfra.get_host(f"ansible://{name}?ansible_inventory={self.inventory}")


@pytest.fixture(scope="module", autouse=True)
def _ansible_on_path() -> Iterator[None]:
    """testinfra's Ansible backend runs ``ansible-inventory`` from PATH: the project's venv."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{BIN}:{os.environ.get('PATH', '')}")
        yield


@pytest.fixture(scope="module")
def community(controller: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Community]:
    work = tmp_path_factory.mktemp("community")
    hosts = {name: new_host(work / "hosts" / name) for name in ("broker", "central", "pi-test-1")}
    inventory = write_inventory(
        work / "inventory.yml",
        {
            "broker": {"broker": hosts["broker"]},
            "central": {"central": hosts["central"]},
            "edge": {"pi-test-1": hosts["pi-test-1"]},
            "kiosk": {"pi-test-1": hosts["pi-test-1"]},
        },
    )
    first = play(controller, inventory)
    second = play(controller, inventory) if first.returncode == 0 else first
    yield Community(hosts, inventory, first, second)


def test_the_first_run_sets_up_every_host(community: Community) -> None:
    assert community.first.returncode == 0, community.first.stdout[-8000:] + community.first.stderr[-2000:]
    counts = recap(community.first.stdout)
    for name in ("broker", "central", "pi-test-1"):
        assert counts[name]["failed"] == 0 and counts[name]["changed"] > 0


def test_a_second_run_changes_nothing(community: Community) -> None:
    assert community.second.returncode == 0, community.second.stdout[-8000:]
    counts = recap(community.second.stdout)
    assert {name: counts[name]["changed"] for name in ("broker", "central", "pi-test-1")} == {
        "broker": 0,
        "central": 0,
        "pi-test-1": 0,
    }, community.second.stdout[-8000:]


def test_the_edge_node_has_its_user_release_config_keys_and_units(community: Community) -> None:
    host = community.host("pi-test-1")
    user = host.user("varta")
    assert user.exists and user.shell == "/usr/sbin/nologin" and user.home == "/var/lib/varta"
    current = host.file("/opt/varta/current")
    assert current.is_symlink and current.linked_to == "/opt/varta/releases/0.1.0"
    assert host.run("/opt/varta/current/bin/python -c 'import edge.agent, varta'").rc == 0
    config = host.file("/etc/varta/edge.yaml")
    assert (config.user, config.group, config.mode) == ("root", "varta", 0o640)
    rendered = yaml.safe_load(config.content_string)
    assert rendered["node_id"] == "pi-test-1" and rendered["site"] == "test-site"
    assert rendered["mqtt"]["host"] == "broker.test" and rendered["mqtt"]["tls"]["cert_file"] == "/etc/varta/node.crt"
    assert rendered["kiosk"]["enabled"] is True  # pi-test-1 is in the kiosk group
    assert host.run("/opt/varta/current/bin/python -c 'import aiohttp, edge.kiosks.manager'").rc == 0
    key = host.file("/etc/varta/node.key")
    assert (key.user, key.group, key.mode) == ("root", "varta", 0o640)
    node_cert = certificate(host, "/etc/varta/node.crt")
    assert common_name(node_cert) == "pi-test-1"  # the broker's ACL username
    node_cert.verify_directly_issued_by(certificate(host, "/etc/varta/ca.crt"))
    data = host.file("/var/lib/varta/edge")
    assert (data.user, data.mode) == ("varta", 0o750)
    box_key = host.file("/var/lib/varta/edge/box.key")  # the sealing key, made on the node
    assert (box_key.user, box_key.group, box_key.mode) == ("varta", "varta", 0o600)
    public = host.run("/opt/varta/current/bin/varta edge pubkey --config /etc/varta/edge.yaml")
    assert public.rc == 0 and len(public.stdout.strip()) == 44
    unit = host.file("/etc/systemd/system/varta-edge.service").content_string
    assert "Type=notify" in unit and "WatchdogSec=30" in unit and "User=varta" in unit
    assert enabled(host, "varta-edge") and enabled(host, "chrony")
    journald = host.file("/etc/systemd/journald.conf.d/varta.conf").content_string
    assert "Storage=volatile" in journald
    assert "RuntimeWatchdogSec=15" in host.file("/etc/systemd/system.conf.d/varta-watchdog.conf").content_string


def test_the_kiosk_boots_into_chromium_without_restore_prompts(community: Community) -> None:
    host = community.host("pi-test-1")
    for package in ("cage", "chromium", "wlr-randr", "ddcutil", "cec-utils"):
        assert host.package(package).is_installed, package
    unit = host.file("/etc/systemd/system/varta-kiosk.service").content_string
    assert "/usr/bin/cage" in unit and "--kiosk" in unit and "http://127.0.0.1:8090/player" in unit
    assert "ExecStartPre=/usr/local/lib/varta-kiosk-reset-profile" in unit
    assert "--remote-debugging-address=127.0.0.1" in unit  # screenshots for the takeover proof, loopback only
    rule = host.file("/etc/polkit-1/rules.d/50-varta-kiosk.rules").content_string
    assert '"varta-kiosk.service"' in rule and '"restart"' in rule and '"varta"' in rule
    assert enabled(host, "varta-kiosk")
    assert host.file("/etc/systemd/system/getty@tty1.service").linked_to == "/dev/null"
    prefs = "/var/lib/kiosk/chromium/Default/Preferences"
    host.run(f'mkdir -p $(dirname {prefs}) && echo \'{{"profile": {{"exit_type": "Crashed"}}}}\' > {prefs}')
    assert host.run("/usr/local/lib/varta-kiosk-reset-profile /var/lib/kiosk/chromium").rc == 0
    assert '"exit_type": "Normal"' in host.file(prefs).content_string


def test_central_and_the_broker_are_configured(community: Community) -> None:
    central = community.host("central")
    assert central.file("/opt/varta/current/bin/varta").exists
    config = yaml.safe_load(central.file("/etc/varta/central.yaml").content_string)
    assert config["database_url"] == "sqlite+aiosqlite:////var/lib/varta/central/varta.db"
    assert config["mqtt"]["tls"]["cert_file"] == "/etc/varta/mqtt.crt"
    assert config["auth"] == {"cookie_secure": True, "require_enrolled_node_keys": True}  # HTTPS; enrolled keys
    assert common_name(certificate(central, "/etc/varta/mqtt.crt")) == "central"
    assert central.file("/var/lib/varta/central/varta.db").user == "varta"  # migrated as central's user
    assert central.file("/etc/varta/signing.key").mode == 0o640
    assert central.file("/etc/nginx/sites-enabled/varta.conf").is_symlink
    assert central.run("nginx -t").rc == 0
    assert enabled(central, "varta-central") and enabled(central, "nginx")
    broker = community.host("broker")
    conf = broker.file("/etc/mosquitto/mosquitto.conf").content_string
    assert "require_certificate true" in conf and "use_identity_as_username true" in conf
    assert broker.file("/etc/mosquitto/varta/acl.conf").contains("pattern write varta/v1/+/%u/status")
    server_cert = certificate(broker, "/etc/mosquitto/varta/server.crt")
    names = server_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["broker.test"]
    server_cert.verify_directly_issued_by(certificate(broker, "/etc/mosquitto/varta/ca.crt"))
    assert enabled(broker, "mosquitto")


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_analyze_verify_accepts_every_installed_unit(community: Community, name: str) -> None:
    root = community.hosts[name]
    for unit in UNITS[name]:
        result = subprocess.run(
            ["chroot", str(root), "systemd-analyze", "verify", "--man=no", f"/etc/systemd/system/{unit}"],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
        problems = [line for line in result.stderr.splitlines() if unit.split(".")[0] in line]
        assert result.returncode == 0 and not problems, f"{unit}: {result.stderr}"


def test_a_failing_canary_stops_the_rollout_before_the_other_nodes(controller: Path, tmp_path: Path) -> None:
    nodes = {name: new_host(tmp_path / "hosts" / name) for name in ("pi-canary", "pi-b", "pi-c")}  # in this order
    inventory = write_inventory(tmp_path / "inventory.yml", {"edge": nodes})
    # The canary's configuration is broken (an invalid setting): the agent's own config check refuses it.
    host_vars = tmp_path / "host_vars"
    host_vars.mkdir()
    (host_vars / "pi-canary.yml").write_text(yaml.safe_dump({"edge_extra_config": {"health": {"interval_s": -5}}}))
    result = play(controller, inventory)
    assert result.returncode != 0
    counts = recap(result.stdout)
    assert counts["pi-canary"]["failed"] == 1
    assert "pi-b" not in counts and "pi-c" not in counts, result.stdout[-4000:]
    for untouched in ("pi-b", "pi-c"):
        assert not (nodes[untouched] / "opt" / "varta").exists()
        assert not (nodes[untouched] / "etc" / "varta").exists()
