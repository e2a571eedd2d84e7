# One image for every service of the scaled deployment (web, worker, feed).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH="/app/.venv/bin:$PATH"
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
COPY requirements/ requirements/
RUN python -m venv .venv && .venv/bin/pip install --no-cache-dir --require-hashes -r requirements/run.lock
COPY package.json package-lock.json ./
RUN .venv/bin/npm ci --no-audit --no-fund --loglevel=error
COPY . .
RUN SECRET_KEY=build-only DEBUG=0 ALLOWED_HOSTS=localhost .venv/bin/python manage.py collectstatic --noinput
RUN useradd --create-home aibo && chown -R aibo /app
USER aibo
EXPOSE 8000
CMD ["uvicorn", "aibo.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers", "--ws-per-message-deflate", "false"]
