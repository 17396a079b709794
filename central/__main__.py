"""``python -m central [--config FILE]``: run central (same as ``varta central run``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from central.server import main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m central", description="Run Varta central.")
    parser.add_argument("--config", type=Path, default=None, help="YAML configuration file")
    sys.exit(main(parser.parse_args().config))
