"""ASGI entry point: HTTP through Django, websockets through Channels."""

from __future__ import annotations

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aibo.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from aibo.body_limit import BodySizeLimit  # noqa: E402
from aibo.routing import websocket_urlpatterns  # noqa: E402
from aibo.ws import SameOriginValidator, TokenAuth  # noqa: E402

# A web process holds long-lived objects (settings, URL resolvers, templates) and pushes a burst
# of small messages to every socket on each price: left alone, the garbage collector's full
# passes over that heap stall a push by 150-200 ms (bench/bench_ws.py). Freeze what is loaded
# now and collect the young generation less often.
gc.collect()
gc.freeze()
gc.set_threshold(20_000, 50, 1000)

application = ProtocolTypeRouter(
    {
        # Django reads a whole body before any view can refuse it: the cap comes first.
        "http": BodySizeLimit(django_asgi_app),
        "websocket": SameOriginValidator(
            AuthMiddlewareStack(TokenAuth(URLRouter(websocket_urlpatterns)))
        ),
    }
)
