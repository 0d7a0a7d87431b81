"""The agent package's exception root."""


class ShoalError(Exception):
    """A failure a user should see as one line: what is wrong and what to do."""
