# syntax=docker/dockerfile:1
# Multi-stage build. Dependencies compile in a layer of their own (against a stub crate), so
# a change to the code rebuilds only the code.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && echo '' > src/lib.rs \
    && for b in throughput render; do echo 'fn main() {}' > benches/$b.rs; done \
    && cargo build --release --locked --bin webhook-relay \
    && rm -rf src benches
COPY src src
COPY benches benches
COPY schema schema
COPY templates templates
COPY config config
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin webhook-relay

# Runtime: Debian slim with CA certificates (for HTTPS endpoints), a non-root user, and a
# health check against the worker's own /healthz.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin relay
COPY --from=build /src/target/release/webhook-relay /usr/local/bin/webhook-relay
COPY config /etc/webhook-relay
USER 10001
ENV WEBHOOK_RELAY_CONFIG=/etc/webhook-relay \
    RELAY__SERVER__LISTEN=0.0.0.0:9090 \
    RELAY__LOG__FORMAT=json
EXPOSE 9090
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
    CMD ["webhook-relay", "healthcheck", "--url", "http://127.0.0.1:9090/healthz"]
ENTRYPOINT ["webhook-relay"]
CMD ["run"]
