# The Nudge image: `nudge run`, `nudge worker` and `nudge loadgen` in docker-compose.yml.
#   docker build -t nudge:0.1.0 .    docker run --rm nudge:0.1.0 help
# Full bookworm (not -slim): node-gyp needs python3, make and g++ to build the Kafka binding.
FROM node:20-bookworm

# @confluentinc/kafka-javascript's prebuilt binary cannot always be downloaded; with
# CKJS_LINKING=dynamic it builds librdkafka's binding against these system libraries instead
# (the same list .ci/run installs).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libcurl4-openssl-dev libssl-dev zlib1g-dev libzstd-dev liblz4-dev libsasl2-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV CKJS_LINKING=dynamic

# Dependencies first, so a source change does not rebuild the native module.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-fund --no-audit

# Sources run as TypeScript through tsx (a dependency): no build step, stack traces point at .ts.
COPY bin ./bin
COPY src ./src
COPY proto ./proto
COPY config ./config
COPY tsconfig.json ./

USER node
ENV NUDGE_CONFIG=config/nudge.yaml NUDGE_HTTP_HOST=0.0.0.0
EXPOSE 8080
ENTRYPOINT ["node", "--max-semi-space-size=32", "bin/nudge.js"]
CMD ["run"]
