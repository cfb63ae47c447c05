# syntax=docker/dockerfile:1
# EdgeBench in a container: `docker build -t edgebench .`, then
#   docker run --rm --user "$(id -u):$(id -g)" -v "$PWD/results:/results" edgebench run --quiet --out /results
# Models and data are mounted read-only (e.g. -v models/smollm2:/model:ro -v data:/data:ro
# with --model /model --data-dir /data); runs are written under --out (/results, a volume).
# Sharded runs on Kubernetes, Slurm and CI: docs/scale-out.md.

# tract 0.23 needs Rust 1.91
FROM rust:1.91-bookworm AS build
WORKDIR /edgebench
COPY . .
# .git comes along so that run.json records the commit (build.rs); the caches keep
# compiled dependencies between builds, so the binary is copied out of target/
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/edgebench/target \
    cargo build --release --locked && cp target/release/edgebench /usr/local/bin/edgebench

FROM debian:bookworm-slim
# plots need a TrueType font; ca-certificates for --model hf:...
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --create-home edgebench \
    && mkdir /results /model /data \
    && chown edgebench:edgebench /results
COPY --from=build /usr/local/bin/edgebench /usr/local/bin/edgebench
# suites are compiled into the binary; the bundled fixtures (the default data) and the
# device profiles are read at run time from the build's source folder, /edgebench
COPY fixtures /edgebench/fixtures
COPY devices /edgebench/devices
USER 10001
WORKDIR /results
VOLUME ["/results"]
ENTRYPOINT ["edgebench"]
CMD ["--help"]
