# One image for every Sluice component: `sluice operator` and `sluice extproc` (the Helm chart runs
# both from it). Build: docker build -t sluice:dev .

ARG NODE_IMAGE=node:20-bookworm-slim

# Compiles TypeScript to dist/ with the full (dev) dependency set.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY operator/ operator/
COPY extproc/ extproc/
RUN npm run build

# Production dependencies only, resolved from the same lockfile.
FROM ${NODE_IMAGE} AS deps
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

FROM ${NODE_IMAGE}
# npm and corepack are not needed at run time; removing them drops their dependencies' CVEs too.
RUN rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack \
      /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
  && groupadd --system --gid 65532 sluice \
  && useradd --system --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin sluice
WORKDIR /app
ENV NODE_ENV=production
# Files stay root-owned and read-only to the process: it writes nothing but its socket, which
# lives on a mounted volume.
COPY package.json ./
COPY --from=deps /src/node_modules/ node_modules/
COPY --from=build /src/dist/ dist/
# The ADS server and the extproc load the wire protos from here at run time, and the Envoy
# emulator (sluice run without Envoy) the targeted Envoy API's descriptors (proto/envoy-api).
COPY proto/ proto/
USER 65532:65532
ENTRYPOINT ["node", "dist/operator/cli.js"]
CMD ["--help"]
