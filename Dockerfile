# The aptc controller's image: `aptc controller run` with the pinned Helm beside it (the cluster
# driver runs the real Helm for chart components) and git (bundles whose files are a Git commit
# are fetched with the git CLI). Build from the repository's root:
#   docker build -t aptc:0.1.0 .
# It cannot be built in this project's CI (no container engine there); docs/controller.md says so.

FROM rust:1.90-bookworm AS build
WORKDIR /src
COPY . .
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/*
RUN cargo build --release --locked --bin aptc && bash tools/install-helm.sh

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends git ca-certificates openssh-client \
    && rm -rf /var/lib/apt/lists/* && useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin nonroot
COPY --from=build /src/target/release/aptc /usr/local/bin/aptc
COPY --from=build /src/.tools/bin/helm /usr/local/bin/helm
USER 65532
ENTRYPOINT ["/usr/local/bin/aptc"]
CMD ["controller", "run"]
