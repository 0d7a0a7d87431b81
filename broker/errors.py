"""The broker package's one exception root."""


class BrokerError(Exception):
    """Something about the MQTT side went wrong: say what, and what to do."""


class EnvelopeError(BrokerError):
    """A message off the network was not a valid shoal envelope (remote misbehaviour)."""


class NotConnected(BrokerError):
    """The session has no live connection to the broker right now."""


class RequestTimeout(BrokerError):
    """No answer arrived for a request within its timeout."""


class MessageTooLarge(BrokerError):
    """A message this side would publish is over the broker's size limit: it is not sent (the
    broker would drop it, or end the connection of the client that sent it)."""
