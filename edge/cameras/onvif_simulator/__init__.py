"""The project's own ONVIF camera simulator (Device, Media, PTZ, Events; digest auth, clock offset, faults).

``python -m edge.cameras.onvif_simulator --port 8000`` runs it; tests and the demo import :class:`OnvifSimulator`.
"""

from .config import Faults, SimulatorConfig
from .server import OnvifSimulator
from .thread import SimulatorThread, run_in_thread

__all__ = ["Faults", "OnvifSimulator", "SimulatorConfig", "SimulatorThread", "run_in_thread"]
