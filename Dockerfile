# The tracebench binary in a slim image, for `docker compose up`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tracebench

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/tracebench /usr/local/bin/tracebench
COPY scenarios /scenarios
ENTRYPOINT ["tracebench"]
CMD ["--help"]
