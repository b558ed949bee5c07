"""MQTT device profile: topic filters and payload fields mapped to point names."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.sources.profile_base import ProfileBase


class MqttField(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    point: str
    # Dotted path into the JSON document; integers index arrays (`motor.temps.0`).
    path: str


class MqttTopic(BaseModel):
    """One topic filter and how to read its payloads.

    - `json`: `fields` map paths to points; `items` names an array of readings in one message,
      each item giving its point by `name_path` and its value by `value_path`;
    - `number`: the payload is a plain number.
    `point` is a template for the point name built from topic levels (`{3}` is level 3, counting
    from 0), e.g. `{2}.{4}` for asset and signal taken from the topic.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    filter: str = Field(min_length=1)
    parser: Literal["json", "number"] = "json"
    fields: tuple[MqttField, ...] = ()
    items: str | None = None
    name_path: str = "name"
    value_path: str = "value"
    point: str | None = None
    # Path of the timestamp (epoch seconds, epoch milliseconds or ISO 8601); arrival time if unset.
    # For `items`, the path is looked up in each item first, then in the document.
    timestamp: str | None = None
    # The points this topic carries (for `items` and `number` topics; simulators publish them).
    points: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> MqttTopic:
        if self.parser == "number" and self.point is None:
            raise ValueError("parser number needs `point` (a name or a topic-level template)")
        if self.parser == "json" and not self.fields and self.items is None:
            raise ValueError("parser json needs `fields` or `items`")
        return self


class MqttProfile(ProfileBase):
    protocol: Literal["mqtt"]
    # Points the device publishes (names as produced by the topics' fields/templates).
    points: tuple[str, ...] = Field(min_length=1)
    units: dict[str, str] = Field(default_factory=dict)
    topics: tuple[MqttTopic, ...] = Field(min_length=1)

    def point_names(self) -> list[str]:
        return list(self.points)

    def unit_of(self, name: str) -> str:
        return self.units.get(name, "")
