"""Dashboard translations: gettext catalogs (``locale/<lang>/LC_MESSAGES/varta.po``) loaded with Babel at run time.

msgids are English. Ukrainian is the default language, English is available. Run
``python -m central.dashboard.i18n`` after changing templates or marked strings: it adds new msgids to every
catalog (and reports untranslated ones); translate them in ``locale/uk/LC_MESSAGES/varta.po``.
"""

from __future__ import annotations

import gettext
import sys
from collections.abc import Iterable
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Final

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from fastapi import Request

LANGUAGES: Final = ("uk", "en")
LANGUAGE_NAMES: Final = {"uk": "Українська", "en": "English"}
LANG_COOKIE: Final = "varta_lang"
DOMAIN: Final = "varta"
PACKAGE_DIR: Final = Path(__file__).parent
LOCALE_DIR: Final = PACKAGE_DIR / "locale"
TEMPLATES_DIR: Final = PACKAGE_DIR / "templates"
#: Where msgids come from: the dashboard, and the central packages whose words reach people (the alert banner,
#: incident titles and notifications, the availability report).
SOURCE_DIRS: Final = (
    PACKAGE_DIR,
    PACKAGE_DIR.parent / "alerts",
    PACKAGE_DIR.parent / "incidents",
    PACKAGE_DIR.parent / "notify",
    PACKAGE_DIR.parent / "reports",
)

#: How Babel finds msgids: ``_()``/``gettext()``/``N_()`` in Python, ``{% trans %}`` and ``_()`` in templates.
METHOD_MAP: Final = [("**.py", "python"), ("templates/**.html", "jinja2.ext:babel_extract")]
EXTRACT_OPTIONS: Final = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "trimmed": "true"}}
KEYWORDS: Final = {"_": None, "gettext": None, "N_": None}


def N_(msgid: str) -> str:  # noqa: N802 - the conventional gettext marker name
    """Mark *msgid* for extraction without translating it yet."""
    return msgid


def po_path(language: str) -> Path:
    """Where the catalog of *language* lives."""
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(language: str) -> Catalog:
    """The parsed ``.po`` catalog of *language*."""
    with po_path(language).open("rb") as fh:
        catalog: Catalog = read_po(fh, locale=language, domain=DOMAIN)
    return catalog


@cache
def translations(language: str) -> gettext.GNUTranslations:
    """Compiled translations of *language* (``.po`` → ``.mo`` in memory, once per process)."""
    buffer = BytesIO()
    write_mo(buffer, read_catalog(language), use_fuzzy=False)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def pick_language(*candidates: str | None, default: str = "uk") -> str:
    """The first supported language among *candidates*, else *default*."""
    for candidate in candidates:
        if candidate in LANGUAGES:
            return candidate
    return default if default in LANGUAGES else LANGUAGES[0]


def cookie_language(request: Request) -> str | None:
    """The language saved in the browser's cookie, if supported."""
    value = request.cookies.get(LANG_COOKIE)
    return value if value in LANGUAGES else None


# Strings the browser scripts need (key → msgid); every page carries them, translated, as a JSON block.
JS_MESSAGES: Final = {
    "online": N_("Online"),
    "offline": N_("Offline"),
    "live": N_("Live"),
    "connecting": N_("Connecting…"),
    "reconnecting": N_("Live updates lost — reconnecting…"),
    "just_now": N_("just now"),
    "min_ago": N_("%(m)s min ago"),
    "h_ago": N_("%(h)s h %(m)s min ago"),
    "d_ago": N_("%(d)s d %(h)s h ago"),
    "never": N_("never"),
    "duration_d": N_("%(d)s d %(h)s h"),
    "duration_h": N_("%(h)s h %(m)s min"),
    "duration_m": N_("%(m)s min"),
    "since": N_("since"),
    "reason_connected": N_("connected"),
    "reason_last_will": N_("connection lost"),
    "reason_shutdown": N_("shut down"),
    "reason_stale": N_("stopped reporting"),
    "status_online": N_("online"),
    "status_degraded": N_("degraded"),
    "status_offline": N_("offline"),
    "status_unknown": N_("unknown"),
    "severity_info": N_("info"),
    "severity_warning": N_("warning"),
    "severity_critical": N_("critical"),
    "historical": N_("replayed"),
    "undervoltage": N_("Under-voltage!"),
    "no_data": N_("no data"),
    "new_node": N_("New node"),
    "camreason_unreachable": N_("no connection: power or network"),
    "camreason_auth_failed": N_("wrong user name or password"),
    "camreason_timeout": N_("answers too slowly"),
    "camreason_no_frames": N_("no picture arrives"),
    "camreason_frozen": N_("picture frozen"),
    "camreason_black": N_("picture black or blank"),
    "camreason_tamper": N_("covered, painted over or turned away"),
    "camreason_low_fps": N_("too few frames per second"),
    "camreason_stream_error": N_("stream cannot be decoded"),
    "camreason_onvif_error": N_("camera control (ONVIF) fails"),
    "camreason_not_configured": N_("not set up yet"),
    "cam_no_picture": N_("no picture yet"),
    "cam_picture": N_("picture"),
    "cam_node_offline": N_("node offline: status may be out of date"),
    "cam_sent": N_("Sent."),
    "cam_failed": N_("Failed: %(reason)s"),
    "cam_adopted": N_("Adoption sent to the node."),
    "live_watch": N_("Watch live"),
    "live_stop": N_("Stop video"),
    "live_connecting": N_("Connecting to the camera…"),
    "live_failed": N_("No live video: %(reason)s"),
    "live_forbidden": N_("Your role may not watch live video."),
    "live_connection_lost": N_("The video connection was lost."),
    "live_retry_in": N_("Trying again in %(s)s s."),
    "live_end_source_lost": N_("The camera stopped sending video."),
    "live_end_viewer_lost": N_("The video connection was lost."),
    "live_end_viewer_left": N_("Video stopped."),
    "live_end_camera_removed": N_("The camera was removed from its node."),
    "live_end_node_stopping": N_("The camera's node is shutting down."),
    "live_end_node_offline": N_("The camera's node went offline."),
    "live_end_node_restarted": N_("The camera's node restarted."),
    "live_end_connect_timeout": N_("The video connection could not be made (network or firewall)."),
    "live_end_unknown": N_("The video ended."),
    "wall_page": N_("Page %(page)s of %(pages)s"),
}

#: Camera reason codes (``varta.contract.CameraReason``) → JS message keys above.
CAMERA_REASON_KEYS: Final = {key.removeprefix("camreason_"): key for key in JS_MESSAGES if key.startswith("camreason_")}


def js_messages(language: str) -> dict[str, str]:
    """:data:`JS_MESSAGES` translated into *language*."""
    tr = translations(language)
    return {key: tr.gettext(msgid) for key, msgid in JS_MESSAGES.items()}


def extract_msgids(*directories: Path) -> set[str]:
    """Every msgid used in the Python code and templates of *directories* (default: :data:`SOURCE_DIRS`)."""
    found: set[str] = set()
    for directory in directories or SOURCE_DIRS:
        for _file, _line, message, _comments, _context in extract_from_dir(
            str(directory), METHOD_MAP, options_map=EXTRACT_OPTIONS, keywords=KEYWORDS
        ):
            if isinstance(message, str):
                found.add(message)
            else:
                found.update(m for m in message if m)
    return found


def missing_translations(language: str, msgids: Iterable[str]) -> set[str]:
    """msgids absent from the *language* catalog, or present but untranslated or fuzzy."""
    catalog = read_catalog(language)
    missing: set[str] = set()
    for msgid in msgids:
        entry = catalog.get(msgid)
        if entry is None or entry.fuzzy or not entry.string:
            missing.add(msgid)
    return missing


def update_catalogs() -> dict[str, set[str]]:
    """Add new msgids to every catalog (English: msgstr = msgid); returns what is untranslated per language."""
    msgids = extract_msgids()
    untranslated: dict[str, set[str]] = {}
    for language in LANGUAGES:
        catalog = read_catalog(language)
        for msgid in sorted(msgids):
            if catalog.get(msgid) is None:
                catalog.add(msgid, msgid if language == "en" else "")
        for message in list(catalog):
            if message.id and message.id not in msgids:
                catalog.delete(message.id)
        with po_path(language).open("wb") as fh:
            write_po(fh, catalog, width=0, sort_output=True, omit_header=False)
        untranslated[language] = missing_translations(language, msgids)
    return untranslated


if __name__ == "__main__":
    report = update_catalogs()
    for lang, missing in report.items():
        for msgid in sorted(missing):
            sys.stdout.write(f"{lang}: untranslated: {msgid!r}\n")
    sys.exit(1 if any(report.values()) else 0)
