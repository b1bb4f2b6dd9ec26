/**
 * The registry's catalogue in the official MCP Registry API's form (v0.1, server.json of 2025-12-11): every
 * service as a ServerDetail named <REGISTRY_NAMESPACE>/<service>, with its remote and the registry's own
 * metadata; for a user (a user key, or X-Registry-User), only the services the user's role reaches, and the
 * gateway as a server of its own. docs/registry_api.md describes it for the people who call it.
 */
import { createHash } from "node:crypto";
import { and, asc, eq, gt, gte, sql } from "drizzle-orm";
import { type Context, Hono } from "hono";
import * as v from "valibot";
import type { Caller, Ctx } from "../../shared/context.ts";
import { AppError } from "../../shared/errors.ts";
import { type AppEnv, readInput } from "../../shared/http.ts";
import { transformOrIssue } from "../../shared/validate.ts";
import type { Feature } from "../../shared/feature.ts";
import { REGISTRY_VERSION } from "../../shared/mcp.ts";
import { listingOf, roleOf } from "../gateway/catalogue.ts";
import { FALLBACK_DESCRIPTION } from "../services/discovery.ts";
import { importTool } from "./import_servers.ts";

/** The key of the registry's own metadata in each answer's `_meta` (reverse DNS, as the spec asks). */
const META_KEY = "local.mcp-registry/registry";
/** The version shown for a service that reported none the API can show (docs/registry_api.md). */
const FALLBACK_VERSION = "0.0.0";
/** The gateway's entry for a user: <namespace>/gateway (a service of that name is shown under its hashed name). */
const GATEWAY = "gateway";
const PLAIN = /^[a-zA-Z0-9._-]+$/;
const MAX_NAME = 200;

// How a hashed name ends: a plain name never does (one that would is hashed too), so no service can take another's.
const HASHED = /-[0-9a-f]{8}$/;

/**
 * `<namespace>/<service>`: the service name when it fits the spec's pattern, else (or when it is "gateway",
 * or ends the way a hashed name does) sanitized, with "-" and 8 hex digits of its SHA-256.
 */
export function serverName(namespace: string, service: string): string {
  const room = MAX_NAME - namespace.length - 1;
  if (PLAIN.test(service) && service !== GATEWAY && !HASHED.test(service) && service.length <= room) return `${namespace}/${service}`;
  const hash = createHash("sha256").update(service).digest("hex").slice(0, 8);
  return `${namespace}/${service.replace(/[^a-zA-Z0-9._-]/g, "-").slice(0, room - 9)}-${hash}`;
}

// What a service's entry is built from.
type Row = {
  name: string;
  endpoint: string;
  description: string;
  transport: "streamable_http" | "sse";
  requiresAuthorization: boolean;
  methodAuthorization: string;
  status: "ok" | "unreachable";
  lastDiscoveredAt: string | null;
  serverVersion: string | null;
  updatedAt: string;
  createdAt: string;
  tools: number;
};

type Entry = { server: Record<string, unknown>; _meta: Record<string, unknown>; updatedAt: string };

// At most `max` code points (JSON Schema counts them), cut with "…"; the spec's description is 1 to 100.
function fitted(text: string, max: number): string {
  const points = Array.from(text.trim());
  if (points.length === 0) return FALLBACK_DESCRIPTION;
  return points.length <= max ? points.join("") : `${points.slice(0, max - 1).join("")}…`;
}

// The header a remote needs for the user's credential, described (a secret input), never filled.
function credentialHeader(method: string, what: string) {
  return {
    name: "Authorization",
    description: `${method} and ${what}`,
    isRequired: true,
    isSecret: true,
    value: `${method} {token}`,
    variables: { token: { description: what, isRequired: true, isSecret: true } },
  };
}

function serviceEntry(namespace: string, s: Row): Entry {
  const remote = {
    type: s.transport === "sse" ? "sse" : "streamable-http",
    url: s.endpoint,
    ...(s.requiresAuthorization ? { headers: [credentialHeader(s.methodAuthorization, `your credential for service "${s.name}" (agents: GET /token)`)] } : {}),
  };
  return {
    server: { name: serverName(namespace, s.name), description: fitted(s.description, 100), version: s.serverVersion ?? FALLBACK_VERSION, remotes: [remote] },
    _meta: {
      [META_KEY]: {
        service_name: s.name,
        tools: s.tools,
        status: s.status,
        last_discovered_at: s.lastDiscoveredAt,
        published_at: s.createdAt,
        updated_at: s.updatedAt,
        is_latest: true,
      },
    },
    updatedAt: s.updatedAt,
  };
}

// The gateway as a server of its own for the user: one remote, the user's key described as a secret input.
function gatewayEntry(ctx: Ctx, userId: string, tools: number, updatedAt: string): Entry {
  return {
    server: {
      name: `${ctx.config.namespace}/${GATEWAY}`,
      title: "Gateway",
      description: "Every tool your role may use, from every service, behind one MCP endpoint with your own credentials",
      version: REGISTRY_VERSION,
      remotes: [{ type: "streamable-http", url: `${ctx.publicUrl}/gateway/mcp`, headers: [credentialHeader("Bearer", "your user key (create_user_key)")] }],
    },
    _meta: { [META_KEY]: { gateway: true, user_id: userId, tools, updated_at: updatedAt, is_latest: true } },
    updatedAt,
  };
}

/** Which services a user sees (by row id, with the number of the role's tools on each), or null for every service. */
async function reachOf(ctx: Ctx, caller: Caller): Promise<Map<number, number> | null> {
  if (caller.userId === undefined) return null;
  const roleId = await roleOf(ctx, caller.userId);
  const reach = new Map<number, number>();
  if (roleId === null) return reach;
  for (const { serviceId } of (await listingOf(ctx, roleId)).byName.values()) reach.set(serviceId, (reach.get(serviceId) ?? 0) + 1);
  return reach;
}

// The services after `after` (by name), updated since `since`, with their tools; at most `limit` rows when given.
async function serviceRows(ctx: Ctx, filter: { after?: string; since?: string; name?: string; limit?: number }): Promise<(Row & { id: number })[]> {
  const { services, tools } = ctx.tables;
  const updatedAt = sql<string>`coalesce(${services.updatedAt}, ${services.createdAt})`;
  const query = ctx.db
    .select({
      id: services.id,
      name: services.name,
      endpoint: services.endpoint,
      description: services.description,
      transport: services.transport,
      requiresAuthorization: services.requiresAuthorization,
      methodAuthorization: services.methodAuthorization,
      status: services.status,
      lastDiscoveredAt: services.lastDiscoveredAt,
      serverVersion: services.serverVersion,
      updatedAt,
      createdAt: services.createdAt,
      // eq(), not a bare "a = b": drizzle leaves a one-table select's own columns unqualified in a subquery.
      tools: sql<number>`(select count(*) from ${tools} where ${and(eq(tools.serviceId, services.id), eq(tools.held, false))})`,
    })
    .from(services)
    .where(
      and(
        filter.after !== undefined ? gt(services.name, filter.after) : undefined,
        filter.since !== undefined ? gte(updatedAt, filter.since) : undefined,
        filter.name !== undefined ? eq(services.name, filter.name) : undefined,
      ),
    )
    .orderBy(asc(services.name));
  const rows = await (filter.limit !== undefined ? query.limit(filter.limit) : query);
  return rows.map((r) => ({ ...r, tools: Number(r.tools), requiresAuthorization: Boolean(r.requiresAuthorization) }));
}

const Cursor = v.pipe(
  v.string(),
  v.maxLength(1024, "is not a cursor this registry gave"),
  transformOrIssue((cursor) => {
    const text = Buffer.from(cursor, "base64url").toString();
    // What a cursor holds is a service name: never a control character (PostgreSQL refuses NUL in a query).
    if (!/^s:[^\x00-\x1f\x7f-\x9f]*$/.test(text)) throw new Error("is not a cursor this registry gave");
    return text.slice(2);
  }),
);
const cursorOf = (after: string) => Buffer.from(`s:${after}`).toString("base64url");

export const ListInput = v.object({
  cursor: v.optional(Cursor),
  limit: v.optional(
    v.pipe(
      v.string(),
      v.regex(/^\d{1,3}$/, "must be an integer from 1 to 100"),
      v.transform(Number),
      v.minValue(1, "must be an integer from 1 to 100"),
      v.maxValue(100, "must be an integer from 1 to 100"),
    ),
    "30",
  ),
  search: v.optional(v.pipe(v.string(), v.maxLength(200, "must be at most 200 characters"))),
  updated_since: v.optional(
    v.pipe(
      v.string(),
      v.check(
        (s) => /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/i.test(s) && !Number.isNaN(Date.parse(s)),
        "must be an RFC 3339 date-time, e.g. 2025-08-07T13:15:04Z",
      ),
      v.transform((s) => new Date(s).toISOString()),
    ),
  ),
  version: v.optional(v.pipe(v.string(), v.maxLength(255, "must be at most 255 characters"))),
  include_deleted: v.optional(v.picklist(["true", "false"], 'must be "true" or "false"')),
});
type ListInput = v.InferOutput<typeof ListInput>;

const matches = (e: Entry, input: ListInput) =>
  (input.search === undefined || (e.server.name as string).toLowerCase().includes(input.search.toLowerCase())) &&
  (input.version === undefined || input.version === "latest" || e.server.version === input.version) &&
  (input.updated_since === undefined || e.updatedAt >= input.updated_since);

// The user's gateway (null: no user, or no tool): its tools, and the newest change among the services it reaches.
function userGateway(ctx: Ctx, caller: Caller, reach: Map<number, number> | null, reached: { updatedAt: string }[]): Entry | null {
  if (!reach || reach.size === 0) return null;
  const newest =
    reached
      .map((r) => r.updatedAt)
      .sort()
      .at(-1) ?? new Date(0).toISOString();
  return gatewayEntry(
    ctx,
    caller.userId!,
    [...reach.values()].reduce((a, b) => a + b, 0),
    newest,
  );
}

// The rows a user reaches, each with the number of the role's tools on it (every row when there is no user).
const reachedRows = <R extends Row & { id: number }>(rows: R[], reach: Map<number, number> | null): R[] =>
  reach ? rows.filter((r) => reach.has(r.id)).map((r) => ({ ...r, tools: reach.get(r.id)! })) : rows;

// Rows read at a time by a filtered list (a user's reach, search, an exact version), until a page is full.
const CHUNK = 200;

/**
 * GET /v0.1/servers: a page of entries by service name. The gateway (for a user) comes first on the first
 * page; a cursor names the last service shown ("" after the gateway alone). A filter only the entries can
 * answer (search on the full name, version, a user's reach) reads CHUNK rows at a time from the cursor
 * until the page and one more entry are found, not every row.
 */
async function listServers(ctx: Ctx, caller: Caller, input: ListInput) {
  const reach = await reachOf(ctx, caller);
  const filtered = reach !== null || input.search !== undefined || (input.version !== undefined && input.version !== "latest");
  const chunk = filtered ? CHUNK : input.limit + 1;
  const shown: { entry: Entry; after: string }[] = [];
  const gateway = input.cursor === undefined ? userGateway(ctx, caller, reach, await reachedUpdates(ctx, reach)) : null;
  if (gateway && matches(gateway, input)) shown.push({ entry: gateway, after: "" });
  for (let after = input.cursor; shown.length <= input.limit; ) {
    const rows = await serviceRows(ctx, { after, since: input.updated_since, limit: chunk });
    for (const r of reachedRows(rows, reach)) {
      const entry = serviceEntry(ctx.config.namespace, r);
      if (matches(entry, input)) shown.push({ entry, after: r.name });
    }
    if (rows.length < chunk) break;
    after = rows[rows.length - 1].name;
  }
  const page = shown.slice(0, input.limit);
  const more = shown.length > input.limit;
  return {
    servers: page.map(({ entry }) => shape(entry)),
    metadata: { ...(more ? { nextCursor: cursorOf(page[page.length - 1].after) } : {}), count: page.length },
  };
}

// When each service a user reaches last changed (what their gateway's entry shows): two columns of each row, not the entries.
async function reachedUpdates(ctx: Ctx, reach: Map<number, number> | null): Promise<{ updatedAt: string }[]> {
  if (!reach || reach.size === 0) return [];
  const { services } = ctx.tables;
  const rows = await ctx.db.select({ id: services.id, updatedAt: sql<string>`coalesce(${services.updatedAt}, ${services.createdAt})` }).from(services);
  return rows.filter((r) => reach.has(r.id));
}

const shape = ({ server, _meta }: Entry) => ({ server, _meta });

/** The entry named `name` as this caller sees it, or not_found ("Server not found", the spec's words). */
async function findServer(ctx: Ctx, caller: Caller, name: string): Promise<Entry> {
  const namespace = ctx.config.namespace;
  const reach = await reachOf(ctx, caller);
  if (!name.startsWith(`${namespace}/`)) throw new AppError("not_found", "Server not found");
  const part = name.slice(namespace.length + 1);
  if (part === GATEWAY) {
    const gateway = userGateway(ctx, caller, reach, await reachedUpdates(ctx, reach));
    if (gateway) return gateway;
    throw new AppError("not_found", "Server not found");
  }
  // No service name holds a control character (and PostgreSQL refuses NUL in a query).
  if (/[\x00-\x1f\x7f-\x9f]/.test(part)) throw new AppError("not_found", "Server not found");
  // A plain name is the service's own: one indexed lookup; a hashed one is looked for among all names.
  const rows = await serviceRows(ctx, HASHED.test(part) ? {} : { name: part });
  const row = reachedRows(rows, reach).find((r) => serverName(namespace, r.name) === name);
  if (!row) throw new AppError("not_found", "Server not found");
  return serviceEntry(namespace, row);
}

// The server name of a route: URL-encoded in one segment (com.example%2Fweather), or, as a convenience, in two.
const nameParam = (c: { req: { param(name: string): string | undefined } }) => {
  const ns = c.req.param("ns");
  return ns === undefined ? c.req.param("serverName")! : `${ns}/${c.req.param("name")}`;
};

async function versions(c: Context<AppEnv>) {
  const entry = await findServer(c.get("ctx"), c.get("caller"), nameParam(c));
  return c.json({ servers: [shape(entry)], metadata: { count: 1 } });
}

async function oneVersion(c: Context<AppEnv>) {
  const entry = await findServer(c.get("ctx"), c.get("caller"), nameParam(c));
  const version = c.req.param("version")!;
  if (version !== "latest" && version !== entry.server.version) throw new AppError("not_found", "Server version not found");
  return c.json(shape(entry));
}

/** The routes of the registry API: reads only (servers come in through add_service and import_servers, for admins). */
const serverRoutes = new Hono<AppEnv>()
  .get("/v0.1/servers", async (c) => c.json(await listServers(c.get("ctx"), c.get("caller"), await readInput(c, ListInput, "list servers"))))
  .get("/v0.1/servers/:serverName/versions", versions)
  .get("/v0.1/servers/:serverName/versions/:version", oneVersion)
  .get("/v0.1/servers/:ns/:name/versions", versions)
  .get("/v0.1/servers/:ns/:name/versions/:version", oneVersion);

/** The official MCP Registry API: its reads, and import_servers for admins. */
export const registryApi: Feature = { name: "registry_api", tools: [importTool], routes: serverRoutes };
