"""The broker URL, the Redis connection and the Celery app, configured for safety: JSON only
(never pickle), late acknowledgement, and a task rejected (delivered again) when its worker dies."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

PREFIX = "sdw"  # every Redis key this package writes starts with it
TASK_NAME = "sdw.generate"
CONNECT_TIMEOUT = 3.0  # seconds: Redis unreachable is an error, not a hang


class ScaleOutError(RuntimeError):
    """A configuration or connection problem of the broker, in words for the person starting it."""


@dataclass(frozen=True)
class BrokerUrl:
    """`redis://[:password@]host:port/db` or `rediss://...` (TLS); the password never reaches logs."""

    url: str

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ScaleOutError(f"--queue must be a redis:// or rediss:// URL, not {redact(url)!r}")
        if not parts.hostname:
            raise ScaleOutError(f"--queue URL has no host: {redact(url)!r}")
        try:
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as exc:
            raise ScaleOutError(f"--queue URL has a bad port: {redact(url)!r}") from exc
        db = parts.path.strip("/") or "0"
        if not db.isdigit():
            raise ScaleOutError(f"--queue URL: the database after the port must be a number: {redact(url)!r}")
        return cls(url)

    @property
    def safe(self) -> str:
        return redact(self.url)

    @property
    def tls(self) -> bool:
        return self.url.startswith("rediss://")


def redact(url: str) -> str:
    """The URL with its password (and user) replaced by ***, for messages and logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if _port_or_none(parts) is not None else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _port_or_none(parts: urllib.parse.SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def connect(broker: BrokerUrl) -> Any:
    """A Redis client for the URL, checked with a ping; a clear ScaleOutError when unreachable."""
    import redis

    client = redis.Redis.from_url(
        broker.url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=30.0, health_check_interval=30
    )
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise ScaleOutError(f"Redis at {broker.safe} refused the password: {exc}") from None
    except redis.RedisError as exc:
        raise ScaleOutError(
            f"cannot reach Redis at {broker.safe}: {exc}. Start it (docs/scale-out.md) or fix --queue."
        ) from None
    return client


def celery_app(broker: BrokerUrl) -> Any:
    """The Celery app both sides use (tasks go by name: the front end never imports the worker)."""
    from celery import Celery

    app = Celery("sdwebui", broker=broker.url, backend=broker.url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        event_serializer="json",
        task_acks_late=True,  # acknowledged when done: a job in flight survives a worker's death
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds one job: the front end decides who gets what
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=False,
        broker_connection_timeout=CONNECT_TIMEOUT,
        redis_socket_connect_timeout=CONNECT_TIMEOUT,
        result_expires=3600,
        # the front end re-sends a dead worker's task itself; Redis must not re-deliver a long job
        # to the same queue while it still runs (kombu's default: after one hour)
        broker_transport_options={"visibility_timeout": 2 * 24 * 3600},
        task_track_started=False,
        worker_send_task_events=False,
    )
    if broker.tls:
        import ssl

        app.conf.broker_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
        app.conf.redis_backend_use_ssl = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return app


def key(*parts: str) -> str:
    return ":".join((PREFIX, *parts))
