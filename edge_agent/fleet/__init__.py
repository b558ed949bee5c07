"""Fleet operations over MQTT: signed commands (deploy a bundle, roll back, push a config, ask
for status), the agent side that obeys them and the operator side that issues them. See
docs/FLEET.md."""
