# One image for every service of the scaled deployment (web, worker, feed, migrate).
#
# Two stages: the first installs the locked dependencies, the front-end libraries (npm, from the
# lock file) and collects the static files; the second keeps only the virtualenv, the source
# and the collected files, and runs as an unprivileged user.

FROM python:3.11-slim-bookworm AS build
ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements/ requirements/
RUN python -m venv .venv && .venv/bin/pip install --require-hashes -r requirements/run.lock
COPY package.json package-lock.json ./
RUN PATH="/app/.venv/bin:$PATH" npm ci --no-audit --no-fund --loglevel=error
COPY . .
RUN SECRET_KEY=build-only DEBUG=0 ALLOWED_HOSTS=localhost AIBO_DATA_DIR=/app/var \
    .venv/bin/python manage.py collectstatic --noinput --verbosity 0

FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH="/app/.venv/bin:$PATH" AIBO_DATA_DIR=/app/var
WORKDIR /app
RUN useradd --system --create-home --uid 10001 aibo && install -d -o aibo -m 700 /app/var
COPY --from=build /app/.venv /app/.venv
COPY --from=build --chown=aibo /app/var/static /app/var/static
COPY --chown=aibo . .
USER aibo
EXPOSE 8000
CMD ["uvicorn", "aibo.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--no-proxy-headers", "--ws-per-message-deflate", "false", "--ws-max-size", "4096"]
