"""Live view: WebRTC passthrough of camera streams (aiortc and PyAV are imported only when a session starts)."""
