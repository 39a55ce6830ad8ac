# dnstap-forwarder as a container sidecar.
#   docker build -t dnstap-forwarder .
#   docker run -v dnstap:/var/run/dnstap -p 127.0.0.1:9180:9180 dnstap-forwarder
# Every setting is a DNSTAP_* environment variable (README, "Configuration").
# CI cannot run a Docker engine here; scripts/test-container-runtime.sh builds the binary the way the
# build stage does and runs it in a minimal Debian root holding only the runtime stage's packages.

# --- build: the official Swift image, release build, Swift standard library linked statically ---
FROM swift:6.3-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends zlib1g-dev libprotobuf-c-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN swift build -c release --product dnstap-forwarder --static-swift-stdlib \
 && install -D "$(swift build -c release --show-bin-path)/dnstap-forwarder" /out/dnstap-forwarder

# --- runtime: Debian slim with only what the binary needs ---
FROM debian:bookworm-slim
# RUNTIME_PACKAGES (read by scripts/test-container-runtime.sh): zlib1g for gzip to HEC,
# libprotobuf-c1 for the dnstap decoder, ca-certificates for HEC over TLS, curl for the HEALTHCHECK.
RUN apt-get update \
 && apt-get install -y --no-install-recommends zlib1g libprotobuf-c1 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10053 dnstap \
 && useradd --uid 10053 --gid dnstap --no-create-home --shell /usr/sbin/nologin dnstap \
 && install -d -o dnstap -g dnstap -m 0770 /var/run/dnstap /var/lib/dnstap-forwarder /var/log/dnstap-forwarder
COPY --from=build /out/dnstap-forwarder /usr/local/bin/dnstap-forwarder
USER dnstap
ENV DNSTAP_UNIX_SOCKET=/var/run/dnstap/dnstap.sock \
    DNSTAP_UNIX_SOCKET_MODE=0660 \
    DNSTAP_ADMIN_LISTEN=0.0.0.0:9180 \
    DNSTAP_HEC_BUF_PATH=/var/lib/dnstap-forwarder/spool \
    DNSTAP_OUTPUT_PATH=/var/log/dnstap-forwarder/dnstap.log
VOLUME ["/var/run/dnstap"]
EXPOSE 9180
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD curl -fsS http://127.0.0.1:9180/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/dnstap-forwarder"]
