"""MQTT readings in: config, topic profile, payload parser and subscriber."""
