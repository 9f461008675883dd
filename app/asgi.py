"""ASGI entry point for servers: ``uvicorn app.asgi:app``."""

import threading

from app.main import create_app
from app.services.curation.pii_pool import warm_pool

app = create_app()
# start the PII scanner's processes now, not on the first ingest (they load Presidio)
threading.Thread(target=warm_pool, name="pii-pool-warm-up", daemon=True).start()
