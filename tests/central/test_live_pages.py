"""Pages around live view: the camera page holds the player (offline poster when the camera is down), the wall
offers live layouts, observers see no camera at all, and admins list who watched what."""

from __future__ import annotations

from datetime import timedelta

from central.auth.roles import Role
from central.store.live_models import LiveSession
from tests.central.test_auth_support import CentralEnv, central_env
from tests.central.test_cameras_pages import prepare
from varta.contract import utcnow

__all__ = ["central_env"]


def cookie(token: str, language: str = "uk") -> dict[str, str]:
    return {"cookie": f"varta_session={token}; varta_lang={language}"}


async def test_the_camera_page_holds_the_player_and_an_offline_poster_with_the_reason(central_env: CentralEnv) -> None:
    await prepare(central_env)
    token = await central_env.session_token("disp")
    r = await central_env.client.get("/cameras/maidan-01/cam-1", headers=cookie(token, "en"))
    assert r.status_code == 200
    assert "/static/live_player.js" in r.text and 'id="liveview"' in r.text
    # cam-1 is offline (unreachable): the poster says so, with the reason, instead of trying to play.
    poster = r.text[r.text.index('class="liveview__offline"') :][:400]
    assert "hidden" not in poster.split(">")[0]
    assert "Camera offline" in poster and "no connection: power or network" in poster
    r = await central_env.client.get("/cameras/maidan-01/cam-2", headers=cookie(token, "en"))
    poster = r.text[r.text.index('class="liveview__offline"') :][:200]
    assert "hidden" in poster.split(">")[0]  # online camera: no poster, the player starts


async def test_the_wall_offers_pictures_and_live_layouts_of_1_4_and_9(central_env: CentralEnv) -> None:
    await prepare(central_env)
    token = await central_env.session_token("disp")
    r = await central_env.client.get("/cameras", headers=cookie(token))
    assert [f'data-layout="{n}"' in r.text for n in (0, 1, 4, 9)] == [True] * 4
    assert "Наживо: 4" in r.text and "/static/live_player.js" in r.text


async def test_observers_see_the_fleet_but_no_camera(central_env: CentralEnv) -> None:
    await prepare(central_env)
    await central_env.add_user("obs", Role.OBSERVER)
    token = await central_env.session_token("obs")
    r = await central_env.client.get("/", headers=cookie(token))
    assert r.status_code == 200
    assert 'href="/cameras"' not in r.text and "Спостерігач" in r.text
    for path in ("/cameras", "/cameras/maidan-01/cam-1"):
        assert (await central_env.client.get(path, headers=cookie(token))).status_code == 403
    r = await central_env.client.get("/api/v1/cameras/maidan-01/cam-1/snapshot", headers=cookie(token))
    assert r.status_code == 403


async def test_admins_list_who_watched_what(central_env: CentralEnv) -> None:
    await prepare(central_env)
    await central_env.add_user("boss", Role.ADMIN)
    now = utcnow()
    async with central_env.db.session() as s:
        s.add_all(
            [
                LiveSession(
                    session_id="sess-open-0001",
                    node_id="maidan-01",
                    device_id="cam-1",
                    site="center",
                    stream="main",
                    username="disp",
                    ip="10.1.2.3",
                    started_at=now - timedelta(minutes=3),
                    end_detail="",
                ),
                LiveSession(
                    session_id="sess-done-0001",
                    node_id="maidan-01",
                    device_id="cam-2",
                    site="center",
                    stream="sub",
                    username="op",
                    started_at=now - timedelta(hours=2),
                    ended_at=now - timedelta(hours=2) + timedelta(seconds=95),
                    end_reason="source_lost",
                    end_detail="RTSP server closed the stream",
                ),
            ]
        )
        await s.commit()
    token = await central_env.session_token("boss")
    r = await central_env.client.get("/admin/live", headers=cookie(token, "en"))
    assert r.status_code == 200
    text = r.text
    assert text.index("sess-open-0001") < text.index("sess-done-0001")  # open views first
    assert "watching now" in text and "10.1.2.3" in text and "Фонтан" in text
    assert "The camera stopped sending video." in text and "RTSP server closed the stream" in text
    assert "1:35" in text  # 95 s
    r = await central_env.client.get("/admin/live?user=op", headers=cookie(token, "en"))
    assert "sess-done-0001" in r.text and "sess-open-0001" not in r.text
    disp = await central_env.session_token("disp")
    assert (await central_env.client.get("/admin/live", headers=cookie(disp))).status_code == 403
