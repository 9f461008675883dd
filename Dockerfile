# One image for web and workers. TORCH_INDEX picks the torch build:
#   CPU (default): https://download.pytorch.org/whl/cpu   GPU: https://download.pytorch.org/whl/cu124
FROM python:3.11-slim
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/prefloop
RUN pip install --index-url "$TORCH_INDEX" "torch>=2.4,<3"
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY trainer ./trainer
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
RUN pip install -e .
RUN useradd --create-home prefloop && mkdir -p /data && chown prefloop /data
USER prefloop
ENV PREFLOOP_DATA_DIR=/data
EXPOSE 8000
CMD ["prefloop", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
