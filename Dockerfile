# spasm-cds: the CDS Hooks service under gunicorn, with the bundled knowledge (cards/, mappings/).
# JWT verification is on; mount a trusted issuers file and set SPASM_CDS_TRUSTED_ISSUERS (README "Security").
# The try-it page (unauthenticated, for demos) is off. Debian's nginx runs in front of gunicorn
# (SPASM_CDS_PROXY=nginx, supervised by `spasm-cds serve`), so that slow clients cannot tie up the workers.
FROM python:3.11-slim

RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx-light \
    && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SPASM_CDS_HOST=0.0.0.0 \
    SPASM_CDS_PORT=8080 \
    SPASM_CDS_DATA_DIR=/var/lib/spasm-cds \
    SPASM_CDS_KNOWLEDGE_DIR=/app \
    SPASM_CDS_AUTH=on \
    SPASM_CDS_PROXY=nginx \
    SPASM_CDS_TRY_IT=off

WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY cds_service ./cds_service
# the dependencies at the versions requirements.lock pins, so that a rebuild installs what was tested
RUN pip install --no-cache-dir --constraint requirements.lock . \
    && useradd --system --home-dir /var/lib/spasm-cds --create-home spasm
COPY cards ./cards
COPY mappings ./mappings
# fail the build, not the first request, if the knowledge is broken
RUN spasm-cds lint

USER spasm
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import os,urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('SPASM_CDS_PORT', '8080')).status != 200)"
CMD ["spasm-cds", "serve"]
