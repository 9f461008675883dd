"""ASGI entry point for servers: ``uvicorn app.asgi:app``."""

import gc
import threading

from sqlalchemy.orm import configure_mappers

from app.main import create_app
from app.services.curation.pii_pool import warm_pool
from app.web.templating import compile_templates

app = create_app()
# set-up done here rather than in the first requests of each process
configure_mappers()
compile_templates()
# What is loaded by now (modules, the app, mappers, templates: about 257,000 objects) lives
# as long as the process. Moved out of the cyclic collector's reach, a full collection no
# longer scans it: one took 135-190 ms here, a pause of every request in this process, and
# under load one came every 20-30 s (issue 14); now they take 10-15 ms. A frozen object is
# never collected: a cycle among them that is dropped later stays until the process ends.
gc.freeze()
# start the PII scanner's processes now, not on the first ingest (they load Presidio)
threading.Thread(target=warm_pool, name="pii-pool-warm-up", daemon=True).start()
