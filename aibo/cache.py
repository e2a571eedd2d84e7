"""The Redis cache, with its clients kept.

Django's ``RedisCache`` makes a new ``redis.Redis`` for every call (its connections come from
a pool, but the client's table of response callbacks, about 170 entries, is built each time):
about a millisecond of CPU per cache read, several per live bot cycle. A ``redis.Redis`` is
safe to share between threads (each command takes a connection from the pool), so one is kept
per connection pool and reused.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class KeptClients(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._kept: dict[int, Any] = {}
        self._guard = threading.Lock()

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._kept.get(id(pool))  # pools live as long as this object: ids are stable
        if client is None:
            with self._guard:
                client = self._kept.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = KeptClients
