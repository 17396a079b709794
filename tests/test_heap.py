"""After start-up, a service keeps what it allocated so far out of the garbage collector's way."""

from __future__ import annotations

import subprocess
import sys

from varta.heap import YOUNG_THRESHOLD


def test_settling_freezes_the_start_up_heap_and_collects_young_objects_less_often() -> None:
    # In a process of its own: frozen objects are never freed, which a test process must not suffer.
    code = (
        "import gc, json; from varta.heap import settle_after_startup; before = gc.get_freeze_count();"
        "settle_after_startup(); print(json.dumps([before, gc.get_freeze_count(), gc.get_threshold()[0]]))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    before, after, young = (int(x) for x in out.stdout.strip().strip("[]").split(","))
    assert before == 0
    assert after > 1000  # everything the interpreter and the imports allocated
    assert young == YOUNG_THRESHOLD
