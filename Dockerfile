# syntax=docker/dockerfile:1.7
# Waiting-room gateway image.
#
#   docker build -t ghcr.io/example/waiting-room-gateway:0.1.0 --build-arg GIT_COMMIT=$(git rev-parse HEAD) .
#
# glibc base on purpose: the native uWebSockets.js binary (src/uws.ts) is built
# for glibc and Node.js 20; it does not load on musl (Alpine), and the gateway
# refuses the slow pure-JS fallback.
# `npm install`, not `npm ci`: npm leaves other platforms' optional native
# packages out of the lockfile (npm/cli#4828) and `npm ci` then refuses it;
# `npm install` keeps every version the lock pins (see .ci/run).
# test/deploy.test.ts replays the steps of both stages without Docker.

ARG NODE_IMAGE=node:20-bookworm-slim

# ── build: all dependencies, compile TypeScript, generate Lua and proto code ──
FROM ${NODE_IMAGE} AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm install --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts ./scripts
COPY lua ./lua
COPY proto ./proto
COPY machines ./machines
COPY src ./src
# no .git in the build context: /version reports this commit instead
ARG GIT_COMMIT=unknown
ENV GIT_COMMIT=${GIT_COMMIT}
RUN npm run build

# ── runtime: production dependencies only, compiled output, static files ──
FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm install --omit=dev --no-audit --no-fund
COPY --from=build /app/dist ./dist
# lua/ also marks the project root for the static files; proto/ is loaded at run time
COPY lua ./lua
COPY proto ./proto
COPY web ./web
COPY docs/PROTOCOL.md ./docs/PROTOCOL.md
# everything above belongs to root and is read-only for the gateway's user
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.SERVER_PORT||8000)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node as PID 1 receives SIGTERM itself: readiness 503, sockets closed with 4100, exit 0
ENTRYPOINT ["node", "dist/src/main.js"]
