"""The one exception root of the certs package."""


class CertError(Exception):
    """Anything wrong with keys, certificates, CSRs, CRLs or key files.

    The message says what is wrong and, where there is one, what to do about it.
    """


class TokenError(CertError):
    """A join token is malformed."""


class SealError(CertError):
    """A sealed secret cannot be opened (or a recipient key cannot be sealed to)."""
