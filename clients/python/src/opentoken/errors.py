"""Errors: one exception type carrying the HTTP status and the server's error body.

The daemon answers errors in three shapes, depending on the surface:

* OpenToken routes: `application/vnd.error+json` `{"code", "message", "logref"}`;
* `/access-tokens`: `{"type", "message"}`;
* `/v1/access_tokens`: `{"data": {"id", "type": "errors", "attributes": {"message"}}}`.

`OpenTokenError.code` is `code`, `type` or `data.id` respectively; `message` the message.
"""

from __future__ import annotations

import json
from typing import Any


class OpenTokenError(Exception):
    """The server answered with an unexpected status (usually 4xx/5xx)."""

    def __init__(self, status: int, body: bytes = b"", content_type: str | None = None,
                 retry_after: str | None = None, method: str = "", path: str = "") -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.retry_after = retry_after
        self.code: str | None = None
        self.message: str | None = None
        self.logref: str | None = None
        self.shape: str | None = None  # "vnd.error", "access-tokens", "v1" or None
        self.document: Any = None
        try:
            self.document = json.loads(body) if body else None
        except ValueError:
            self.document = None
        doc = self.document
        if isinstance(doc, dict):
            data = doc.get("data")
            if isinstance(data, dict) and data.get("type") == "errors":
                self.shape = "v1"
                self.code = data.get("id")
                attributes = data.get("attributes")
                if isinstance(attributes, dict):
                    self.message = attributes.get("message")
            elif "type" in doc and "message" in doc:
                self.shape = "access-tokens"
                self.code, self.message = doc.get("type"), doc.get("message")
            elif "code" in doc or "logref" in doc:
                self.shape = "vnd.error"
                self.code, self.message = doc.get("code"), doc.get("message")
                self.logref = doc.get("logref")
        # The path may carry ids (never secrets: they are never put in URLs); keep it out of
        # the text so logging the exception does not log the ids.
        text = f"{method} -> HTTP {status}".strip()
        if self.code or self.message:
            text += f": {self.code or ''}{': ' if self.code and self.message else ''}"
            text += f"{self.message or ''}"
        if self.logref:
            text += f" (logref {self.logref})"
        super().__init__(text)
        self.path = path


class ProtocolError(Exception):
    """The server's reply could not be understood (a missing link, header or field)."""
