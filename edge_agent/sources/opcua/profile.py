"""OPC UA device profile: point names mapped to node ids."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.sources.profile_base import POINT_NAME, ProfileBase


class OpcUaNode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=POINT_NAME)
    node_id: str = Field(min_length=3, description="e.g. ns=2;s=Pump.MotorCurrent")
    unit: str = ""
    description: str = ""


class OpcUaProfile(ProfileBase):
    protocol: Literal["opcua"]
    nodes: tuple[OpcUaNode, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> OpcUaProfile:
        names = [n.name for n in self.nodes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate node names: {', '.join(dup)}")
        return self

    def point_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    def unit_of(self, name: str) -> str:
        return self.node(name).unit

    def node(self, name: str) -> OpcUaNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)
