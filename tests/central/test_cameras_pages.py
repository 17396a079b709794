"""Camera pages render in Ukrainian (default) and English, with what a dispatcher needs to see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from nacl.public import PrivateKey

from central.api.camera_schemas import StatusChange
from central.auth.roles import Role
from central.dashboard.camera_pages import timeline
from central.store.camera_models import Camera, CameraSnapshot
from tests.central.test_auth_support import CentralEnv, central_env
from tests.central.test_cameras_api import seed
from tests.central.test_cameras_support import jpeg
from varta.contract import utcnow

__all__ = ["central_env"]

WORDS = {
    "uk": {
        "/cameras": ["Камери", "немає зв’язку: живлення або мережа", "Фонтан", "кадру ще немає", "хв тому"],
        "/cameras/maidan-01/cam-1": ["Стан за останні 24 години", "Поворот і наближення", "Hikvision DS-2DE"],
        "/cameras/discovery": ["Нові камери", "Прийняти", "не може безпечно отримати пароль"],
    },
    "en": {
        "/cameras": ["Cameras", "no connection: power or network", "Фонтан", "no picture yet", "min ago"],
        "/cameras/maidan-01/cam-1": ["Health, last 24 hours", "Turn and zoom", "Hikvision DS-2DE"],
        "/cameras/discovery": ["New cameras", "Adopt", "cannot receive passwords securely"],
    },
}


async def prepare(env: CentralEnv) -> None:
    await seed(env, PrivateKey.generate())
    async with env.db.session() as s:
        cam = await s.get(Camera, ("maidan-01", "cam-1"))
        assert cam is not None
        cam.name = "Фонтан"
        cam.snapshot_at = utcnow() - timedelta(minutes=5)
        s.add(
            CameraSnapshot(
                node_id="maidan-01",
                device_id="cam-1",
                taken_at=cam.snapshot_at,
                received_at=utcnow(),
                source="onvif",
                purpose="periodic",
                content_type="image/jpeg",
                width=320,
                height=240,
                data=jpeg(),
            )
        )
        await s.commit()
    await env.add_user("op", Role.OPERATOR)
    await env.add_user("disp", Role.DISPATCHER)


@pytest.mark.parametrize("language", ["uk", "en"])
async def test_camera_pages_render_in_both_languages(central_env: CentralEnv, language: str) -> None:
    await prepare(central_env)
    token = await central_env.session_token("op")
    for path, words in WORDS[language].items():
        r = await central_env.client.get(path, headers={"cookie": f"varta_session={token}; varta_lang={language}"})
        assert r.status_code == 200, path
        assert f'<html lang="{language}">' in r.text
        for word in words:
            assert word in r.text, (language, path, word)
    assert "hunter2" not in r.text


async def test_the_wall_puts_broken_cameras_first_with_their_reason(central_env: CentralEnv) -> None:
    await prepare(central_env)
    token = await central_env.session_token("disp")
    r = await central_env.client.get("/cameras", headers={"cookie": f"varta_session={token}"})
    assert r.status_code == 200
    first = r.text.index('data-device-id="cam-1"')
    second = r.text.index('data-device-id="cam-2"')
    assert first < second  # offline before online
    assert 'class="cam cam--offline' in r.text
    assert "/api/v1/cameras/maidan-01/cam-1/snapshot?v=" in r.text
    # Dispatchers do not see the discovery inbox in the menu, and may not open it.
    assert 'href="/cameras/discovery"' not in r.text
    r = await central_env.client.get("/cameras/discovery", headers={"cookie": f"varta_session={token}"})
    assert r.status_code == 403


async def test_unknown_camera_is_a_404_page(central_env: CentralEnv) -> None:
    await prepare(central_env)
    token = await central_env.session_token("disp")
    r = await central_env.client.get("/cameras/maidan-01/ghost", headers={"cookie": f"varta_session={token}"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")


def test_timeline_covers_the_day_with_each_status_in_turn() -> None:
    end = utcnow()
    start = end - timedelta(hours=24)
    changes = [
        StatusChange(ts=end - timedelta(hours=12), status="offline", reason="unreachable"),
        StatusChange(ts=end - timedelta(hours=6), status="online"),
    ]
    before = StatusChange(ts=start - timedelta(hours=1), status="online")
    segments = timeline(changes, before, start, end)
    assert [(s.status, round(s.left), round(s.width)) for s in segments] == [
        ("online", 0, 50),
        ("offline", 50, 25),
        ("online", 75, 25),
    ]
    assert [s.status for s in timeline([], None, start, end)] == ["unknown"]
