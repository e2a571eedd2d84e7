"""The Redis cache keeps its clients (``aibo.cache``): a real Redis."""

from __future__ import annotations

import threading

import pytest

from aibo.cache import RedisCache


@pytest.fixture
def redis_cache(redis_url: str) -> RedisCache:
    cache = RedisCache(redis_url, {"KEY_PREFIX": "cache-test"})
    cache.clear()
    return cache


def test_values_go_through_one_kept_client_shared_by_threads(redis_cache: RedisCache) -> None:
    redis_cache.set("a", {"price": "100.5"}, timeout=60)
    assert redis_cache.get("a") == {"price": "100.5"}
    assert redis_cache.get_many(["a", "b"]) == {"a": {"price": "100.5"}}
    client = redis_cache._cache.get_client()
    seen: list[object] = []

    def read() -> None:
        assert redis_cache.get("a") == {"price": "100.5"}
        seen.append(redis_cache._cache.get_client(write=True))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(c is client for c in seen)  # one server: one pool, one client
    assert redis_cache.add("b", 1, timeout=60) and not redis_cache.add("b", 2, timeout=60)
    assert redis_cache.incr("b") == 2
    redis_cache.delete_many(["a", "b"])
    assert redis_cache.get_many(["a", "b"]) == {}
