"""Encoding what the server exports over OTLP/HTTP (spans, metrics): attributes as OTLP's
AnyValues, times as Unix nanoseconds, a message posted as protobuf."""

from __future__ import annotations

from typing import Any

import httpx
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

PROTOBUF, JSON = "application/x-protobuf", "application/json"


INT64 = range(-(2**63), 2**63)


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        # OTLP's integers are 64-bit: a larger one (JSON has no limit) goes as its decimal text.
        return AnyValue(int_value=value) if value in INT64 else AnyValue(string_value=str(value))
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        found = AnyValue()
        found.array_value.values.extend(any_value(item) for item in value)
        return found
    if isinstance(value, dict):
        found = AnyValue()
        found.kvlist_value.values.extend(attributes(value))
        return found
    return AnyValue(string_value="" if value is None else str(value))


def attributes(values: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=str(key), value=any_value(value)) for key, value in values.items()]


def nanos(moment) -> int:
    return int(moment.timestamp() * 1e9)


def post(client: httpx.Client, url: str, message) -> None:
    client.post(url, content=message.SerializeToString(), headers={"Content-Type": PROTOBUF}).raise_for_status()
