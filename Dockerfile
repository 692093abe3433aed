# syntax=docker/dockerfile:1
# One image for all five services: `cezbek <service>` picks which one runs.

# ---- build: the release binary, with dependency builds cached between source changes
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake protobuf-compiler pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin cezbek \
 && install -D target/release/cezbek /out/cezbek

# ---- runtime: a small Debian with TLS roots, curl for the health check, and a non-root user
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cezbek \
 && useradd --system --uid 10001 --gid cezbek --home-dir /nonexistent --shell /usr/sbin/nologin cezbek
COPY --from=build /out/cezbek /usr/local/bin/cezbek
USER 10001:10001
ENV CEZBEK_LOG_FORMAT=json \
    CEZBEK_HEALTH_PORT=8081
# Each service serves /healthz on its own listen port; CEZBEK_HEALTH_PORT names it.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${CEZBEK_HEALTH_PORT}/healthz" || exit 1
ENTRYPOINT ["/usr/local/bin/cezbek"]
CMD ["--help"]
