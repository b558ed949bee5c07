"""Sparkplug B upstream (docs/FLEET.md, "Sparkplug B"): the gateway as an edge node, each asset a
device, beside the JSON topics. `config` and `topics` import nothing heavy; `metrics`, `session`
and `client` need pysparkplug and are imported only when `upstream.sparkplug.enabled` is set."""
