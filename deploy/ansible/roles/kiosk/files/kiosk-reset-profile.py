#!/usr/bin/python3
"""Before Chromium starts: mark the last session as ended cleanly, so a power cut never leaves a kiosk showing
"Restore pages?" instead of its content (the old --disable-session-crashed-bubble flag no longer does it)."""

import json
import sys
from pathlib import Path

profile = Path(sys.argv[1]) / "Default" / "Preferences"
try:
    prefs = json.loads(profile.read_text(encoding="utf-8"))
except FileNotFoundError:
    sys.exit(0)
except (OSError, ValueError) as exc:  # a corrupt profile after a power cut: start afresh
    print(f"varta-kiosk: unreadable {profile} ({exc}); moved aside", file=sys.stderr)
    profile.rename(profile.with_suffix(".corrupt"))
    sys.exit(0)
session = prefs.setdefault("profile", {})
session["exited_cleanly"] = True
session["exit_type"] = "Normal"
tmp = profile.with_suffix(".varta-tmp")
tmp.write_text(json.dumps(prefs), encoding="utf-8")
tmp.replace(profile)
