/** Composes the features into one registry and serves it on Node (@hono/node-server) or Deno (Deno.serve). */
import { Hono } from "hono";
import { auditRoutes, auditTools } from "./features/audit/audit.ts";
import { authRoutes, authTools } from "./features/auth/auth.ts";
import { healthRoutes, healthTools } from "./features/health/health.ts";
import { rolesRoutes, rolesTools } from "./features/roles/roles.ts";
import { servicesRoutes, servicesTools } from "./features/services/services.ts";
import { usersRoutes, usersTools } from "./features/users/users.ts";
import { createKeyRing, type KeyRing } from "./shared/access.ts";
import type { Config } from "./shared/config.ts";
import type { Ctx } from "./shared/context.ts";
import { openStore, type Store } from "./shared/db/db.ts";
import { type AppEnv, accessMiddleware, limitBody, onHttpError } from "./shared/http.ts";
import { createLog, type Log } from "./shared/log.ts";
import { mcpHandler, type ToolDef } from "./shared/mcp.ts";

/** Every MCP tool of the registry, in the order tools/list shows them. */
export const allTools: ToolDef[] = [...healthTools, ...servicesTools, ...authTools, ...rolesTools, ...usersTools, ...auditTools];

/** Builds the Hono app for a context: access rules, body limit, feature routes, MCP endpoint. */
export function createApp(ctx: Ctx, keys: KeyRing): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.onError(onHttpError);
  app.notFound((c) => c.json({ error: { code: "not_found", message: `No route for ${c.req.method} ${c.req.path}` } }, 404));
  app.use("*", accessMiddleware(ctx, keys), limitBody);
  const mcp = mcpHandler(allTools);
  app.all("/mcp", mcp);
  app.all("/mcp/", mcp);
  for (const routes of [healthRoutes, servicesRoutes, authRoutes, rolesRoutes, usersRoutes, auditRoutes]) app.route("/", routes);
  return app;
}

export type Registry = { url: string; port: number; ctx: Ctx; keys: KeyRing; close(): Promise<void> };

/** Opens the store, builds the app and listens; port 0 picks a free port. */
export async function startRegistry(config: Config, log: Log = createLog()): Promise<Registry> {
  const keys = createKeyRing(config);
  if (keys.mode === "development") log.warn("Development mode: no REGISTRY_ADMIN_KEYS/REGISTRY_AGENT_KEYS set, every caller is admin (loopback only)");
  if (keys.mode === "off") log.warn("REGISTRY_AUTH=off: authentication is disabled, every caller is admin");
  const store: Store = await openStore(config.databaseUrl);
  const ctx: Ctx = { db: store.db, config, log, background: new Set() };
  const app = createApp(ctx, keys);
  const server = await listen(app, config.host, config.port);
  const host = config.host.includes(":") ? `[${config.host}]` : config.host;
  const url = `http://${host}:${server.port}`;
  return {
    url,
    port: server.port,
    ctx,
    keys,
    async close() {
      await server.close();
      await Promise.allSettled([...ctx.background]);
      store.close();
    },
  };
}

type Listening = { port: number; close(): Promise<void> };
type DenoServe = (options: { hostname: string; port: number; onListen?: () => void }, handler: (req: Request) => Response | Promise<Response>) => {
  addr: { port: number };
  shutdown(): Promise<void>;
};

async function listen(app: Hono<AppEnv>, hostname: string, port: number): Promise<Listening> {
  const deno = (globalThis as { Deno?: { serve: DenoServe } }).Deno;
  if (deno) {
    const server = deno.serve({ hostname, port, onListen: () => {} }, app.fetch);
    return { port: server.addr.port, close: () => server.shutdown() };
  }
  const { serve } = await import("@hono/node-server");
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname, port }, (info) => {
      resolve({
        port: info.port,
        close: () => new Promise<void>((done) => {
          server.close(() => done());
          (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
        }),
      });
    });
    server.once("error", reject);
  });
}
