/** Composes the features into one registry and serves it with @hono/node-server (node:http, on Node and on Deno). */
import { Hono } from "hono";
import { accessMiddleware, createKeyRing, type KeyRing, mcpServing } from "./features/access/access.ts";
import { audit } from "./features/audit/audit.ts";
import { consoleRoutes } from "./features/console/console.tsx";
import { credentials } from "./features/credentials/credentials.ts";
import { gateway } from "./features/gateway/gateway.ts";
import { health } from "./features/health/health.ts";
import { httpMetrics, metrics } from "./features/metrics/metrics.ts";
import { openapi } from "./features/openapi/openapi.ts";
import { registryApi } from "./features/registry_api/servers.ts";
import { roles } from "./features/roles/roles.ts";
import { services } from "./features/services/services.ts";
import { toolPinning } from "./features/tool_pinning/pinning.ts";
import { userKeys } from "./features/user_keys/user_keys.ts";
import { users } from "./features/users/users.ts";
import type { Config } from "./shared/config.ts";
import { type Ctx, freshState } from "./shared/context.ts";
import { openVault } from "./shared/crypto.ts";
import { openStore, type Store } from "./shared/db/db.ts";
import type { Feature } from "./shared/feature.ts";
import { type AppEnv, errorJson, limitBody, onHttpError } from "./shared/http.ts";
import { createLog, type Log } from "./shared/log.ts";
import { mcpHandler, type ToolDef } from "./shared/mcp.ts";

/** The registry's features, in the order tools/list shows their tools. */
const FEATURES: Feature[] = [health, services, toolPinning, credentials, roles, users, userKeys, audit, gateway, registryApi, openapi, metrics];

/** Every MCP tool of the registry, in the order tools/list shows them. */
export const allTools: ToolDef[] = FEATURES.flatMap((f) => f.tools ?? []);

/** How the MCP endpoints (HTTP and stdio) serve the registry's tools: each caller's rules, every change audited. */
export const registryMcp = mcpServing(allTools);

/** Builds the Hono app for a context: access rules, body limit, feature routes, MCP endpoint. */
export function createApp(ctx: Ctx, keys: KeyRing): Hono<AppEnv> {
  // strict: false, so "/mcp/" (old clients) is "/mcp".
  const app = new Hono<AppEnv>({ strict: false });
  app.onError(onHttpError);
  app.notFound((c) => errorJson(c, 404, { code: "not_found", message: `No route for ${c.req.method} ${c.req.path}` }));
  // Metrics first, so that what access refuses is counted too.
  app.use("*", httpMetrics(), accessMiddleware(ctx, keys), limitBody());
  app.all("/mcp", mcpHandler(registryMcp));
  for (const feature of FEATURES) if (feature.routes) app.route("/", feature.routes);
  // The web console acts through the same tool pipeline as /mcp, and logs in with the same keys.
  app.route("/", consoleRoutes(registryMcp, keys));
  return app;
}

export type Registry = { url: string; port: number; ctx: Ctx; keys: KeyRing; close(): Promise<void> };

/** Opens the vault and the store (migrated, stored secrets checked against the key): what every entry point needs. */
export async function openContext(config: Config, log: Log): Promise<{ ctx: Ctx; close(): Promise<void> }> {
  const vault = await openVault(config, log);
  const store: Store = await openStore(config.databaseUrl, { sqliteSync: config.sqliteSync, busyTimeoutMs: config.busyTimeoutMs, warn: (message) => log.warn(message) });
  const { db, tables, engine, atomic, statement, execute, ready } = store;
  const publicUrl = config.publicUrl ?? `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${config.port}`;
  const ctx: Ctx = { db, tables, engine, atomic, statement, execute, ready, config, publicUrl, log, vault, ...freshState() };
  // A key that cannot read the stored secrets stops start-up here, not at the first /token (or refresh).
  try {
    for (const feature of FEATURES) await feature.prepare?.(ctx);
  } catch (err) {
    await store.close();
    throw err;
  }
  return {
    ctx,
    async close() {
      await Promise.allSettled([...ctx.background]);
      await store.close();
    },
  };
}

/** Opens the context, builds the app and listens; port 0 picks a free port. */
export async function startRegistry(config: Config, log: Log = createLog()): Promise<Registry> {
  const keys = createKeyRing(config);
  if (keys.mode === "development") log.warn("Development mode: no REGISTRY_ADMIN_KEYS/REGISTRY_AGENT_KEYS set, every caller is admin (loopback only)");
  if (keys.mode === "off") log.warn("REGISTRY_AUTH=off: authentication is disabled, every caller is admin");
  const { ctx, close } = await openContext(config, log);
  const app = createApp(ctx, keys);
  const server = await listen(app, config.host, config.port).catch(async (err) => {
    // A taken port must not leave the store open.
    await close();
    throw err;
  });
  const running = FEATURES.flatMap((f) => (f.start ? [f.start(ctx)] : []));
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${host}:${server.port}`;
  // Port 0 is known only now: links point at the address the registry really listens on.
  if (!config.publicUrl) ctx.publicUrl = url;
  return {
    url,
    port: server.port,
    ctx,
    keys,
    async close() {
      await server.close();
      await Promise.all(running.map((r) => r.stop()));
      await close();
    },
  };
}

type Listening = { port: number; close(): Promise<void> };

// node:http on Deno too: Deno.serve hides the body of a GET request, and old agents send GET /token with one.
async function listen(app: Hono<AppEnv>, hostname: string, port: number): Promise<Listening> {
  const { serve } = await import("@hono/node-server");
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname, port }, (info) => {
      resolve({
        port: info.port,
        close: () =>
          new Promise<void>((done) => {
            server.close(() => done());
            (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
          }),
      });
    });
    server.once("error", reject);
  });
}
