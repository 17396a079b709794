"""MQTT ingest of everything edge nodes report."""
