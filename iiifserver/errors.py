"""Typed errors of the IIIF server.

Owns: the exception hierarchy every layer raises (parser, planner, sources, renderer).
Must not know: HTTP frameworks. ``web/errors.py`` maps these to responses in one place.

Every message is safe to show to a client: it names the parameter or the identifier,
never a filesystem path or an internal exception.
"""

from __future__ import annotations


class IIIFError(Exception):
    """A request that cannot be answered with an image or info document."""

    status: int = 500

    def __init__(self, detail: str, *, parameter: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.parameter = parameter

    def __str__(self) -> str:
        if self.parameter:
            return f"{self.parameter}: {self.detail}"
        return self.detail


class BadRequest(IIIFError):
    """Syntax errors and image-dependent impossibilities (zero-size region, upscale without ^)."""

    status = 400


class Forbidden(IIIFError):
    status = 403


class NotFound(IIIFError):
    """Unknown identifier, or a path that is not an image request."""

    status = 404


class URITooLong(IIIFError):
    status = 414


class NotImplementedFeature(IIIFError):
    """A valid IIIF request for a feature this server does not offer (e.g. ^ with upscaling off)."""

    status = 501


class UnsupportedSource(IIIFError):
    """The source file exists but is not something we will decode (wrong format, too large, corrupt)."""

    status = 501


class SourceDamaged(IIIFError):
    """A damaged source: not the image its name says (truncated, unreadable header, not an image at
    all) or pixels that cannot be decoded. A server-side fault, not a missing feature: 500.

    ``identifier`` is filled in where the identifier is known (the source registry), so the body
    names the source an operator must replace; ``detail`` is the reason, never a path.
    """

    status = 500

    def __init__(self, detail: str, *, identifier: str = "", parameter: str | None = "identifier") -> None:
        super().__init__(detail, parameter=parameter)
        self.identifier = identifier

    def named(self, identifier: str) -> SourceDamaged:
        """The same damage, naming the source it was found in."""
        return SourceDamaged(self.detail, identifier=identifier, parameter=self.parameter)

    def __str__(self) -> str:
        if self.identifier:
            return f"the source {self.identifier!r} is damaged: {self.detail}"
        return super().__str__()


class ServiceUnavailable(IIIFError):
    """Deliberate load shedding; clients should retry after ``retry_after`` seconds."""

    status = 503

    def __init__(self, detail: str, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class SourceChanged(ServiceUnavailable):
    """The source file changed while it was being read: replaced (``os.replace``, a copy over it)
    between the stat that named its version and the read. Retryable: 503 with ``Retry-After``, as the
    next request sees the new file. ``where`` is for logs only (it may be a path); the client is told
    no more than that the image changed."""

    def __init__(self, where: str = "", *, retry_after: int = 1) -> None:
        super().__init__("the image changed while it was read; retry", retry_after=retry_after)
        self.where = where
