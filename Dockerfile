# ragkeep image: one image for api, worker and beat (docker-compose.yml picks the command).
FROM python:3.11-slim

# Debian packages the service needs at run time (apt-runtime.txt), and make.
COPY apt-runtime.txt ./
RUN apt-get update \
    && sed 's/#.*//' apt-runtime.txt | xargs apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# A CPU-only torch wheel index avoids several GB of CUDA packages; pass it at build time
# (docker compose build --build-arg TORCH_INDEX_URL=...). Empty: pip's default index.
ARG TORCH_INDEX_URL=""
COPY pyproject.toml constraints.txt README.md ./
COPY core core
COPY ingest ingest
COPY eval eval
COPY query query
COPY release release
COPY workers workers
COPY service service
COPY cli cli
RUN pip install --no-cache-dir --upgrade pip \
    && pip install --no-cache-dir torch==2.13.0 ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
    && pip install --no-cache-dir -c constraints.txt . \
    && pip install --no-cache-dir --no-deps -c constraints.txt unstructured-inference

ENV RAGKEEP_DATA_DIR=/data \
    RAGKEEP_API_HOST=0.0.0.0
VOLUME ["/data"]
EXPOSE 8000
CMD ["ragkeep", "api"]
