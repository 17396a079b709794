"""The Varta edge agent: runs on a Raspberry Pi node, manages its devices and reports to central over MQTT."""
