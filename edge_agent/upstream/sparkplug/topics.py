"""Sparkplug B topic namespace: spBv1.0/{group}/{type}/{edge node}[/{device}]."""

from __future__ import annotations

from dataclasses import dataclass

NAMESPACE = "spBv1.0"


@dataclass(frozen=True, slots=True)
class SparkplugTopics:
    group: str
    edge_node: str

    def node(self, kind: str) -> str:
        """NBIRTH, NDEATH, NDATA, NCMD of this edge node."""
        return f"{NAMESPACE}/{self.group}/{kind}/{self.edge_node}"

    def device(self, kind: str, device: str) -> str:
        """DBIRTH, DDEATH, DDATA, DCMD of one of its devices."""
        return f"{NAMESPACE}/{self.group}/{kind}/{self.edge_node}/{device}"

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """Commands addressed to this node and to its devices."""
        return (self.node("NCMD"), self.device("DCMD", "+"))

    def command(self, topic: str) -> tuple[str, str | None] | None:
        """("NCMD", None) or ("DCMD", device) for a command topic of this node, else None."""
        parts = topic.split("/")
        if parts[:2] != [NAMESPACE, self.group] or len(parts) < 4 or parts[3] != self.edge_node:
            return None
        if parts[2] == "NCMD" and len(parts) == 4:
            return "NCMD", None
        if parts[2] == "DCMD" and len(parts) == 5 and parts[4]:
            return "DCMD", parts[4]
        return None
