# registry-service image. Build the binary first (see README, "Production
# mode: Electric"); this image only adds Debian 12's runtime libraries.
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libgrpc++1.51 libgrpc29 libprotobuf32 libabsl20220623 \
      libpqxx-6.4 libpq5 libcurl4 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY bin/registry-service /usr/local/bin/registry-service
USER nobody
EXPOSE 50051
ENV WAKE_REGISTRY_LISTEN=0.0.0.0:50051
ENTRYPOINT ["/usr/local/bin/registry-service"]
