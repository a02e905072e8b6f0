# Multi-stage build: dependencies are compiled in their own layer so code changes rebuild fast.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && echo '' > src/lib.rs \
    && cargo build --release --locked 2>/dev/null || true
COPY . .
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin webhook-relay

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home relay
COPY --from=build /src/target/release/webhook-relay /usr/local/bin/webhook-relay
COPY config /etc/webhook-relay
USER relay
ENV WEBHOOK_RELAY_CONFIG=/etc/webhook-relay
ENTRYPOINT ["webhook-relay"]
CMD ["run"]
