"""The one place where secrets are kept out of logs, messages and reprs."""

from __future__ import annotations

import logging
import re
import urllib.parse

_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"]+")


def mask_url(url: str) -> str:
    """Strip user info and the query string from a URL."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def mask_text(text: str) -> str:
    """Mask every URL inside free text, such as an exception message."""
    return _URL.sub(lambda match: mask_url(match.group(0)), text)


def quiet_http_loggers() -> None:
    """Keep HTTP client loggers at WARNING: at DEBUG they print headers, including Authorization."""
    for name in ("httpx", "httpcore", "urllib3", "kubernetes.client.rest"):
        logging.getLogger(name).setLevel(logging.WARNING)
