"""Redis client built from the settings (password from the stack's env file)."""

from __future__ import annotations

from fraudops.settings import Settings


def connect_redis(settings: Settings, timeout: float = 3.0):
    """Return a connected ``redis.Redis``; raises ConnectionError naming the service and the fix."""
    import redis

    client = redis.Redis(
        host=settings.redis_host,
        port=settings.redis_port,
        password=settings.redis_password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ConnectionError(
            f"Redis at {settings.redis_host}:{settings.redis_port} is not reachable ({exc}); "
            "start it with `make stack-up`"
        ) from exc
    return client
