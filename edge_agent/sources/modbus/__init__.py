"""Modbus TCP and RTU: config, register-map profile, codec, read planner and poller."""
