"""Dashboard pages as served: what dispatchers see, what the browser may run, and who may see it."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from central.auth.roles import Role
from central.dashboard.templating import static_url
from central.store.fleet_models import DeviceStateRecord, EventRecord, HealthSample, Node
from tests.central.test_auth_support import ORIGIN, CentralEnv, central_env
from varta.contract import utcnow

__all__ = ["central_env"]

PAGES = ["/", "/nodes/maidan-01", "/admin/users", "/admin/audit", "/account"]


def health_point(cpu: float, *, undervoltage: bool = False) -> dict[str, object]:
    return {
        "ts": utcnow().isoformat(),
        "cpu_percent": cpu,
        "memory_percent": 40.0,
        "disk_percent": 50.0,
        "temperature_c": 55.0,
        "undervoltage": undervoltage,
        "uptime_s": 7200.0,
        "historical": False,
    }


async def seed_fleet(env: CentralEnv) -> None:
    """Two sites: an online and an offline node in "center" (with a hostile name), one online node in "north"."""
    now = utcnow()
    async with env.db.session() as session:
        session.add_all(
            [
                Node(
                    node_id="maidan-01",
                    site="center",
                    name="Майдан",
                    hostname="pi-maidan",
                    version="1.2.3",
                    boot_id="boot-a",
                    online=True,
                    status_since=now - timedelta(minutes=5),
                    last_seen=now,
                    first_seen=now - timedelta(days=3),
                    health_interval_s=30,
                    last_health=health_point(97.0),
                ),
                Node(
                    node_id="school-04",
                    site="center",
                    name="<script>alert('x')</script>",
                    online=False,
                    offline_reason="last_will",
                    status_since=now - timedelta(minutes=2),
                    last_seen=now,
                    first_seen=now - timedelta(days=3),
                    last_health=health_point(10.0, undervoltage=True),
                ),
                Node(
                    node_id="park-03",
                    site="north",
                    name="Парк",
                    online=True,
                    status_since=now,
                    last_seen=now,
                    first_seen=now,
                ),
            ]
        )
        for device_id, status in [("cam-1", "online"), ("cam-2", "degraded"), ("cam-3", "offline")]:
            session.add(
                DeviceStateRecord(
                    node_id="maidan-01",
                    device_id=device_id,
                    kind="camera",
                    name=device_id.upper(),
                    status=status,
                    reason="no_rtsp" if status == "offline" else None,
                    detail="",
                    attrs={},
                    boot_id="boot-a",
                    seq=1,
                    ts=now,
                    status_since=now,
                    updated_at=now,
                )
            )
        for minutes in range(0, 600, 5):
            session.add(
                HealthSample(
                    node_id="maidan-01",
                    boot_id="boot-a",
                    seq=1000 + minutes,
                    ts=now - timedelta(minutes=minutes),
                    received_at=now,
                    historical=False,
                    cpu_percent=20 + minutes % 30,
                    memory_percent=40,
                    disk_percent=50,
                    temperature_c=50,
                    undervoltage=False,
                    uptime_s=100,
                    load_1m=None,
                    memory_available_mb=900,
                    disk_free_mb=9000,
                    agent_uptime_s=90,
                    version="1.2.3",
                    outbox_pending=0,
                    outbox_dropped_telemetry=0,
                    outbox_dropped_events=0,
                )
            )
        for i, (kind, severity, historical) in enumerate(
            [("node.boot", "info", False), ("camera.offline", "critical", True), ("siren.test", "warning", False)]
        ):
            session.add(
                EventRecord(
                    node_id="maidan-01",
                    site="center",
                    boot_id="boot-a",
                    seq=i + 1,
                    ts=now - timedelta(minutes=10 - i),
                    received_at=now,
                    historical=historical,
                    source="node",
                    kind=kind,
                    severity=severity,
                    device_id=None,
                    message=f"message {i}",
                    data={},
                )
            )
        await session.commit()


async def signed_in(env: CentralEnv, role: Role = Role.ADMIN) -> None:
    await env.add_user("person", role)
    assert (await env.login("person")).status_code == 200


async def test_fleet_page_puts_offline_nodes_first_and_counts_them(central_env: CentralEnv) -> None:
    await seed_fleet(central_env)
    await signed_in(central_env, Role.DISPATCHER)

    page = (await central_env.client.get("/")).text
    page = page[: page.index('<template id="site-template">')]  # the clonable blanks for new nodes come after

    assert re.findall(r'<section class="site[^"]*" data-site="([^"]+)"', page) == ["center", "north"]
    assert re.findall(r'<article class="node [^"]+" data-node-id="([^"]+)" data-online="(\w+)"', page) == [
        ("school-04", "false"),
        ("maidan-01", "true"),
        ("park-03", "true"),
    ]
    counters = dict(re.findall(r'data-counter="(\w+)">(\d+)<', page))
    assert counters == {"offline": "1", "online": "2", "device_problems": "2", "nodes": "3"}
    assert "зв’язок втрачено" in page


async def test_fleet_card_shows_health_warnings_and_device_counts(central_env: CentralEnv) -> None:
    await seed_fleet(central_env)
    await signed_in(central_env, Role.DISPATCHER)

    page = (await central_env.client.get("/")).text
    maidan = page[page.index('data-node-id="maidan-01"') : page.index('data-node-id="park-03"')]
    school = page[page.index('data-node-id="school-04"') : page.index('data-node-id="maidan-01"')]

    assert re.search(
        r'class="metric is-warn" data-metric="cpu">\s*<dt>ЦП</dt>\s*<dd><span data-field="cpu">97<', maidan
    )
    assert dict(re.findall(r'data-field="dev-(\w+)">(\d+)<', maidan)) == {
        "offline": "1",
        "degraded": "1",
        "online": "1",
        "unknown": "0",
    }
    assert re.search(r'data-field="undervoltage" hidden', maidan)
    assert re.search(r'data-field="undervoltage">', school)  # shown: this node reports under-voltage


async def test_names_from_nodes_are_escaped(central_env: CentralEnv) -> None:
    await seed_fleet(central_env)
    await signed_in(central_env, Role.DISPATCHER)

    page = (await central_env.client.get("/")).text

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page


async def test_node_page_shows_identity_24h_charts_devices_and_events(central_env: CentralEnv) -> None:
    await seed_fleet(central_env)
    await signed_in(central_env, Role.DISPATCHER)

    page = (await central_env.client.get("/nodes/maidan-01")).text

    assert "pi-maidan" in page and "1.2.3" in page and "boot-a" in page
    assert len(re.findall(r'<svg viewBox="0 0 \d+ \d+" role="img"', page)) == 3
    assert len(re.findall(r'<polyline class="chart__line" points="[\d., ]+">', page)) == 3
    assert "звітів: 120" in page
    assert re.findall(r'<tr data-device-id="([^"]+)"', page) == ["cam-1", "cam-2", "cam-3"]
    events = re.findall(r'<tr data-event-id="\d+" class="sev-(\w+)">', page)
    assert events == ["warning", "critical", "info"]  # newest first
    assert page.count('class="badge badge--historical"') == 1
    assert '"node_id": "maidan-01"' in page  # the page data block the live script reads


async def test_unknown_node_gets_a_404_page(central_env: CentralEnv) -> None:
    await signed_in(central_env, Role.DISPATCHER)

    missing = await central_env.client.get("/nodes/no-such-node")
    invalid = await central_env.client.get("/nodes/NOT%20AN%20ID")

    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "Не знайдено" in missing.text
    assert invalid.status_code == 400


async def test_admin_links_only_for_admins(central_env: CentralEnv) -> None:
    await central_env.add_user("olena", Role.OPERATOR)
    await central_env.login("olena")

    page = (await central_env.client.get("/")).text

    assert 'href="/account"' in page
    assert 'href="/admin/users"' not in page
    assert 'href="/admin/audit"' not in page


async def test_user_form_explains_a_refused_password_in_the_page_language(central_env: CentralEnv) -> None:
    await signed_in(central_env)

    response = await central_env.client.post(
        "/admin/users", data={"username": "petro", "password": "short", "role": "operator"}, headers=ORIGIN
    )

    assert response.status_code == 400
    assert "Пароль має містити щонайменше 10 символів." in response.text
    assert 'value="petro"' in response.text  # the form keeps what was typed
    assert 'data-username="petro"' not in response.text


async def test_user_form_changes_role_and_deactivates(central_env: CentralEnv) -> None:
    await signed_in(central_env)
    await central_env.add_user("petro", Role.DISPATCHER)
    petro = await central_env.get_user("petro")

    role = await central_env.client.post(f"/admin/users/{petro.id}/role", data={"role": "operator"}, headers=ORIGIN)
    off = await central_env.client.post(f"/admin/users/{petro.id}/active", data={"active": "false"}, headers=ORIGIN)
    page = await central_env.client.get(off.headers["location"])

    assert role.headers["location"] == "/admin/users?done=role_changed"
    assert off.headers["location"] == "/admin/users?done=user_deactivated"
    assert "Користувача деактивовано; його сеанси завершено." in page.text
    petro = await central_env.get_user("petro")
    assert (petro.role, petro.active) == ("operator", False)


async def test_account_page_shows_a_new_token_once(central_env: CentralEnv) -> None:
    await signed_in(central_env, Role.DISPATCHER)

    created = await central_env.client.post("/account/tokens", data={"name": "script"}, headers=ORIGIN)
    again = await central_env.client.get("/account")

    secret = re.search(r'<code class="secret" id="new-token">(vt_[\w-]+)</code>', created.text)
    assert secret is not None
    assert secret.group(1) not in again.text
    assert "script" in again.text


@pytest.mark.parametrize("path", ["/login", "/api/v1/auth/me", "/static/style.css", *PAGES])
async def test_security_headers_everywhere(central_env: CentralEnv, path: str) -> None:
    await seed_fleet(central_env)
    await signed_in(central_env)
    if path == "/login":
        central_env.client.cookies.clear()  # signed-in visitors are sent on from the login page

    response = await central_env.client.get(path)

    assert response.status_code == 200, path
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    if not path.startswith("/static/"):
        assert response.headers["cache-control"] == "no-store"


async def test_api_docs_get_a_csp_that_lets_swagger_run(central_env: CentralEnv) -> None:
    response = await central_env.client.get("/api/docs")

    assert "https://cdn.jsdelivr.net" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


async def test_pages_carry_no_inline_script_style_or_event_handler(central_env: CentralEnv) -> None:
    await seed_fleet(central_env)
    await signed_in(central_env)
    central_env.client.cookies.set("varta_lang", "uk")

    for path in [*PAGES, "/login"]:
        if path == "/login":
            central_env.client.cookies.clear()
        page = (await central_env.client.get(path)).text
        for tag in re.findall(r"<script\b[^>]*>", page):
            assert "src=" in tag or 'type="application/json"' in tag, (path, tag)
        assert not re.search(r"<[^>]+\sstyle=", page), path
        assert not re.search(r"<[^>]+\son[a-z]+=", page), path
        for src in re.findall(r'(?:src|href)="(/static/[^"?]+)\?v=[0-9a-f]{12}"', page):
            asset = await central_env.client.get(src)
            assert asset.status_code == 200, src


def test_static_urls_carry_a_content_hash() -> None:
    url = static_url("app.js")

    assert re.fullmatch(r"/static/app\.js\?v=[0-9a-f]{12}", url)
    with pytest.raises(FileNotFoundError):
        static_url("../routes.py")
