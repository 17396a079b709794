"""``python -m edge --config FILE``: run the edge agent with a lean start-up (what systemd runs on a node).

structlog imports ``rich`` (about 0.35 s on this machine, several times that on a Raspberry Pi) only to render
pretty tracebacks; the agent logs plain lines, so that import is refused before anything else loads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.modules.setdefault("rich", None)  # type: ignore[arg-type]  # an ImportError for rich: structlog falls back

from edge.agent import main  # noqa: E402 - must come after the line above

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m edge", description="Run the Varta edge agent.")
    parser.add_argument("--config", type=Path, default=None, help="YAML config file (env VARTA_EDGE__… wins)")
    sys.exit(main(parser.parse_args().config))
