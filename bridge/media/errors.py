"""Errors the media layer reports to the code that drives it."""

from __future__ import annotations


class MediaError(ValueError):
    """A participant's media request was refused.

    Raised at the edge for input a client controls (SDP offers and answers, source
    labels, participant ids) and for requests that make no sense in the current state.
    ``str(error)`` is a plain sentence that can be shown to the user as is.
    """
