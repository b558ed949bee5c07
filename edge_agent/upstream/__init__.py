"""Upstream delivery of alerts and status to an MQTT broker."""
