# The vscope-etl container image (docs/operations.md, "Kubernetes"): the release binary, with the
# report, on a distroless base: glibc and CA certificates (HTTPS to OVHcloud and S3), no shell,
# no package manager, no source or toolchain; runs as the image's non-root user (uid 65532).
#
#   docker build -t vscope-etl .
#   docker run --rm vscope-etl --help
#
# Stage 1: build with the toolchain the project is tested with (Cargo.lock pinned, --locked).
FROM docker.io/library/rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked \
    && install -D -m 0755 target/release/vscope-etl /out/vscope-etl

# Stage 2: the runtime. Debian 12 like the builder, so the binary's glibc matches.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/vscope-etl /usr/local/bin/vscope-etl
# The example pipelines, for `vscope-etl validate` and as a starting point; a real pipeline comes
# from a ConfigMap (deploy/kubernetes/).
COPY pipelines /etc/vscope-etl/pipelines
USER nonroot:nonroot
WORKDIR /home/nonroot
ENTRYPOINT ["/usr/local/bin/vscope-etl"]
CMD ["--help"]
