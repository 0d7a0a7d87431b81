"""A CONNACK refusal raised by the MQTT client is named in shoal's words, with no CONNECT of
our own (one would take over the very session being set up)."""

from __future__ import annotations

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from broker.tls import explain_refusal


def test_refusals_of_both_protocol_versions_are_named_and_other_errors_are_not() -> None:
    v5 = aiomqtt.MqttCodeError(ReasonCode(PacketTypes.CONNACK, identifier=135))
    assert explain_refusal(v5) == "the broker refused this identity (not authorized)"
    v311 = aiomqtt.exceptions.MqttConnectError(5)
    assert explain_refusal(v311) == "the broker refused this identity (not authorized)"
    assert explain_refusal(aiomqtt.exceptions.MqttConnectError(3)) == "the broker is unavailable"
    assert explain_refusal(aiomqtt.MqttError("Operation timed out")) is None
    assert explain_refusal(OSError("refused")) is None
