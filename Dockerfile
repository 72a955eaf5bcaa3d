# flannel-ts image: docker build -t flannel-ts:0.1.0 .
#
# Contents (the same as scripts/build-image.sh, which builds this image
# without a registry):
#   /opt/bin/flanneld            the daemon on the image's Node 20
#   /opt/bin/install-cni-plugin  installs the standalone CNI plugin as /opt/cni/bin/flannel
#   /opt/bin/install-conf        installs /etc/kube-flannel/cni-conf.json as
#                                /etc/cni/net.d/10-flannel.conflist
#   /opt/flannel-ts/             package.json, dist/bundle (flanneld as an esbuild
#                                bundle, its worker threads beside it), production
#                                node_modules, cni-plugin/flannel (one ELF; needs
#                                no Node on the host)
#   iptables, nftables, ca-certificates
ARG NODE_IMAGE=node:20-bookworm-slim

# Production node_modules. better-sqlite3 falls back to compiling from source
# when no prebuilt binary can be downloaded, hence the build tools.
FROM ${NODE_IMAGE} AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/flannel-ts
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && cd node_modules/better-sqlite3 \
 && rm -rf deps src build/deps build/Release/obj build/Release/obj.target build/Release/.deps \
      build/Release/test_extension.node build/Release/*.a

# Type-check with the dev dependencies; bundle flanneld (esbuild) and the CNI
# plugin into a single executable (esbuild + Node SEA + postject; binutils to
# strip it).
FROM ${NODE_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ binutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY scripts/build-bundle.mjs scripts/build-cni-plugin.sh ./scripts/
RUN npx tsc -p tsconfig.json --noEmit \
 && node scripts/build-bundle.mjs \
 && bash scripts/build-cni-plugin.sh

FROM ${NODE_IMAGE}
# The image tag, as scripts/build-image.sh derives it from src/version.ts.
ARG VERSION=0.1.0
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && rm -rf /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx \
      /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* \
 && mkdir -p /opt/cni/bin /etc/cni/net.d /etc/kube-flannel
WORKDIR /opt/flannel-ts
COPY package.json ./
COPY --from=deps /opt/flannel-ts/node_modules ./node_modules
COPY --from=build /src/dist/bundle ./dist/bundle
COPY --from=build /src/dist/cni-plugin/flannel ./cni-plugin/flannel
COPY deploy/image/flanneld deploy/image/install-cni-plugin deploy/image/install-conf /opt/bin/
ENV PATH=/opt/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    NODE_ENV=production
LABEL org.opencontainers.image.title=flannel-ts \
      org.opencontainers.image.version=${VERSION} \
      org.opencontainers.image.licenses=Apache-2.0 \
      org.opencontainers.image.description="flannel, the container overlay network, in TypeScript on Node.js 20"
ENTRYPOINT ["/opt/bin/flanneld"]
