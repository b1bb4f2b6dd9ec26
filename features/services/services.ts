/** Services: register MCP services (discovering their tools), list them, show them and their tools, update, refresh, remove them. */
import { and, asc, count, eq, inArray, ne, or, sql } from "drizzle-orm";
import { Hono } from "hono";
import * as v from "valibot";
import type { PendingAudit } from "../../shared/context.ts";
import { auditedWith } from "../audit/audit.ts";
import { fromCatalogue } from "../../shared/db/answers.ts";
import { type Ctx, firstRow, prepareOnce } from "../../shared/context.ts";
import { asJson, isUniqueViolation, jsonArrayOf, jsonListOf } from "../../shared/db/db.ts";
import { AppError } from "../../shared/errors.ts";
import { definitionColumns } from "../tool_pinning/definition.ts";
import { notifyCatalogueChanged } from "./hook.ts";
import type { AppEnv } from "../../shared/http.ts";
import { ServiceName } from "../../shared/names.ts";
import type { Feature } from "../../shared/feature.ts";
import { defineTool } from "../../shared/mcp.ts";
import { type Discovery, discoverService, type SkippedTool } from "./discovery.ts";
import { Endpoint, endpointSpellings } from "./endpoint.ts";
import {
  applyCatalogue,
  type CatalogueDiff,
  discoveryHeaders,
  hasChanges,
  insertTools,
  nextRefreshAt,
  openDiscoveryToken,
  reencryptDiscoveryTokens,
  refreshStoredService,
  sealDiscoveryToken,
  startRefresher,
  type StoredService,
} from "./refresh.ts";

const Description = v.pipe(v.string("must be a string"), v.trim(), v.maxLength(8192, "must be at most 8192 characters"));

// Sent in an HTTP header: printable ASCII only, so it can never break the header (nor be echoed by a failing one).
const DiscoveryToken = v.pipe(
  v.string("must be a string"),
  v.trim(),
  v.maxLength(8192, "must be at most 8192 characters"),
  v.regex(/^[\x21-\x7e]*$/, "must be printable ASCII without spaces"),
);

const NEEDS_METHOD = 'method_authorization must be "Basic" or "Bearer" when requires_authorization is true';
const TOKEN_NEEDS_AUTHORIZATION = 'discovery_token needs requires_authorization true (it is sent as "Authorization: <method_authorization> <token>")';

const AddServiceInput = v.pipe(
  v.object({
    service_name: ServiceName,
    endpoint: Endpoint,
    description: v.optional(Description, ""),
    requires_authorization: v.optional(v.boolean("must be true or false"), false),
    method_authorization: v.optional(v.string("must be a string"), ""),
    discovery_token: v.optional(DiscoveryToken, ""),
  }),
  v.check((i) => !i.requires_authorization || i.method_authorization === "Basic" || i.method_authorization === "Bearer", NEEDS_METHOD),
  v.check((i) => i.discovery_token === "" || i.requires_authorization, TOKEN_NEEDS_AUTHORIZATION),
  // Without authorization there is no method: store "" whatever was sent.
  v.transform((i) => ({ ...i, method_authorization: i.requires_authorization ? i.method_authorization : "" })),
);
export type AddServiceInput = v.InferOutput<typeof AddServiceInput>;

const ServiceNameInput = v.object({ service_name: ServiceName });
type ServiceNameInput = v.InferOutput<typeof ServiceNameInput>;

const GetToolsInput = v.object({ service_name: ServiceName, include_schemas: v.optional(v.boolean("must be true or false"), false) });

const ListServicesInput = v.object({ include_health: v.optional(v.boolean("must be true or false"), false) });

const UpdateServiceInput = v.object({
  service_name: ServiceName,
  endpoint: v.optional(Endpoint),
  description: v.optional(Description),
  requires_authorization: v.optional(v.boolean("must be true or false")),
  method_authorization: v.optional(v.string("must be a string")),
  discovery_token: v.optional(DiscoveryToken),
});
type UpdateServiceInput = v.InferOutput<typeof UpdateServiceInput>;

const Health = {
  status: v.picklist(["ok", "unreachable"]),
  last_discovered_at: v.nullable(v.string()),
  last_error: v.nullable(v.string()),
  consecutive_failures: v.number(),
};
// With include_health: the health keys and the number of tools, as get_service shows them.
const ServiceRow = v.object({ service_name: v.string(), endpoint: v.string(), description: v.string(), ...v.partial(v.object({ ...Health, tools: v.number() })).entries });
const ServiceDetails = v.object({
  service_name: v.string(),
  endpoint: v.string(),
  description: v.string(),
  transport: v.picklist(["streamable_http", "sse"]),
  requires_authorization: v.boolean(),
  method_authorization: v.string(),
  has_discovery_token: v.boolean(),
  tools: v.number(),
  ...Health,
});
// held and flags: only on a held tool, only for an admin (features/tool_pinning); the definition's other fields with include_schemas.
const ToolRow = v.object({
  id: v.number(),
  name: v.string(),
  description: v.string(),
  roles: v.array(v.string()),
  held: v.optional(v.literal(true)),
  flags: v.optional(v.array(v.string())),
  title: v.optional(v.nullable(v.string())),
  input_schema: v.optional(v.unknown()),
  output_schema: v.optional(v.unknown()),
  annotations: v.optional(v.unknown()),
});
// held and released only when a refresh held or released a tool (features/tool_pinning), so other results stay as they were.
const Diff = {
  added: v.array(v.string()),
  removed: v.array(v.string()),
  changed: v.array(v.string()),
  held: v.optional(v.array(v.string())),
  released: v.optional(v.array(v.string())),
};
// Only present when discovery skipped tools, so results without any stay exactly as they were.
const Skipped = { skipped: v.optional(v.array(v.object({ name: v.string(), reason: v.string() }))) };

/** Finds a service by name or throws not_found. */
async function findService(ctx: Ctx, name: string, action = "find service") {
  const { services } = ctx.tables;
  const [row] = await ctx.db.select().from(services).where(eq(services.name, name)).limit(1);
  if (!row) throw new AppError("not_found", `Cannot ${action} "${name}": no such service`);
  return row;
}

/** Discovers the service's tools, then writes the service and its tools in one transaction (also import_servers's way in). */
export async function addService(ctx: Ctx, input: AddServiceInput, audit?: PendingAudit): Promise<{ tools: number; skipped: SkippedTool[] }> {
  const { services } = ctx.tables;
  const action = `add service "${input.service_name}"`;
  await assertFree(ctx, input, action);
  const token = input.discovery_token || null;
  const found = await discover(ctx, input.endpoint, { wantDescription: input.description === "", headers: discoveryHeaders(input.method_authorization, token) }, action);
  const serviceId = sql`(select ${services.id} from ${services} where ${services.name} = ${input.service_name})`;
  // Set here, not by the database: the discovery token is sealed for the name and this creation time.
  const createdAt = new Date().toISOString();
  const discoveryToken = token ? await sealDiscoveryToken(ctx, { name: input.service_name, createdAt }, token) : null;
  try {
    await ctx.atomic((q) => [
      q.insert(services).values({
        name: input.service_name,
        endpoint: input.endpoint,
        description: input.description || found.description,
        transport: found.transport,
        requiresAuthorization: input.requires_authorization,
        methodAuthorization: input.method_authorization,
        discoveryToken,
        lastDiscoveredAt: createdAt,
        nextRefreshAt: nextRefreshAt(ctx),
        serverVersion: found.version,
        updatedAt: createdAt,
        createdAt,
      }),
      // One statement for every tool (one round trip on PostgreSQL). On SQLite the whole batch runs without
      // yielding; the discovery limits bound how long (docs/services.md).
      ...(found.tools.length ? [insertTools(ctx, q, serviceId, found.tools)] : []),
      // The audit event commits with the service: one fsync, and no service without its record.
      ...(audit ? [auditedWith(ctx, q, audit)] : []),
    ]);
    if (audit) audit.written = true;
  } catch (err) {
    // Another request may have taken the name or endpoint while we were discovering.
    if (isUniqueViolation(err)) await assertFree(ctx, input, action);
    throw err;
  }
  notifyCatalogueChanged(ctx);
  return { tools: found.tools.length, skipped: found.skipped };
}

// Discovery with the action named in its error ("Cannot add service "x": no MCP service answered ...").
async function discover(ctx: Ctx, endpoint: string, options: { wantDescription: boolean; headers?: Record<string, string> }, action: string): Promise<Discovery> {
  return discoverService(endpoint, { timeoutMs: ctx.config.discoveryTimeoutMs, limits: ctx.config.limits, ...options }).catch((err) => {
    throw err instanceof AppError ? new AppError(err.code, `Cannot ${action}: ${err.message}`) : err;
  });
}

async function assertFree(ctx: Ctx, input: { service_name: string; endpoint: string }, action: string): Promise<void> {
  const { services } = ctx.tables;
  const [taken] = await ctx.db
    .select({ name: services.name, endpoint: services.endpoint })
    .from(services)
    .where(or(eq(services.name, input.service_name), inArray(services.endpoint, endpointSpellings(input.endpoint))))
    .limit(1);
  if (!taken) return;
  if (taken.name === input.service_name) throw new AppError("conflict", `Cannot ${action}: a service with that name already exists`);
  throw new AppError("conflict", `Cannot ${action}: service "${taken.name}" already uses endpoint "${taken.endpoint}"`);
}

/** All services, by name. */
async function listServices(ctx: Ctx) {
  return prepareOnce(ctx, "list_services", () => {
    const { services } = ctx.tables;
    return ctx.db
      .select({
        id: services.id,
        name: services.name,
        endpoint: services.endpoint,
        description: services.description,
        transport: services.transport,
        status: services.status,
        lastDiscoveredAt: services.lastDiscoveredAt,
        lastError: services.lastError,
        consecutiveFailures: services.consecutiveFailures,
      })
      .from(services)
      .orderBy(asc(services.name));
  }).execute({});
}

/** The number of tools of each service that has any, by service row id (one grouped read for the whole list). */
async function toolCounts(ctx: Ctx): Promise<Map<number, number>> {
  const { tools } = ctx.tables;
  const rows = await ctx.db.select({ serviceId: tools.serviceId, n: count() }).from(tools).groupBy(tools.serviceId);
  return new Map(rows.map((r) => [r.serviceId, Number(r.n)]));
}

/** One service with its settings, health and number of tools (never its discovery token). */
async function getService(ctx: Ctx, input: ServiceNameInput): Promise<v.InferOutput<typeof ServiceDetails>> {
  const { tools } = ctx.tables;
  const s = await findService(ctx, input.service_name, "get service");
  const [{ n }] = await ctx.db.select({ n: count() }).from(tools).where(eq(tools.serviceId, s.id));
  return {
    service_name: s.name,
    endpoint: s.endpoint,
    description: s.description,
    transport: s.transport,
    requires_authorization: s.requiresAuthorization,
    method_authorization: s.methodAuthorization,
    has_discovery_token: s.discoveryToken !== null,
    tools: Number(n),
    ...health(s),
  };
}

function health(s: Pick<StoredService, "status" | "lastDiscoveredAt" | "lastError" | "consecutiveFailures">) {
  return { status: s.status, last_discovered_at: s.lastDiscoveredAt, last_error: s.lastError, consecutive_failures: s.consecutiveFailures };
}

/** Discovers a service again now and applies the difference (added, removed, changed tools). */
async function refreshService(ctx: Ctx, input: ServiceNameInput): Promise<CatalogueDiff & { tools: number; skipped: SkippedTool[] }> {
  return refreshStoredService(ctx, await findService(ctx, input.service_name, "refresh service"));
}

// The settings update_service changes, in the order its answer names them.
const UPDATABLE = ["endpoint", "description", "requires_authorization", "method_authorization", "discovery_token"];

/**
 * Changes a service's endpoint, description or authorization settings; tools, their ids and attachments
 * stay. A new endpoint (or description "") is discovered first and must answer, else nothing is written.
 * discovery_token "" removes the stored one; turning requires_authorization off removes it too.
 */
async function updateService(ctx: Ctx, input: UpdateServiceInput): Promise<CatalogueDiff & { updated: string[]; skipped: SkippedTool[] }> {
  const action = `update service "${input.service_name}"`;
  const { service_name: _, ...changes } = input;
  if (Object.values(changes).every((x) => x === undefined)) {
    throw new AppError("invalid_input", `Cannot ${action}: give at least one of endpoint, description, requires_authorization, method_authorization, discovery_token`);
  }
  const row = await findService(ctx, input.service_name, "update service");
  const plan = await planUpdate(ctx, row, input, action);
  const { diff, skipped } = await applyUpdate(ctx, row, input, plan, action);
  // The discovery token is not part of what agents see.
  if (plan.updated.some((f) => f !== "discovery_token") || hasChanges(diff)) notifyCatalogueChanged(ctx);
  return { ...diff, updated: UPDATABLE.filter((f) => plan.updated.includes(f)), skipped };
}

// What an update writes (`set`, the fields it names in `updated`), and whether and how it discovers again.
type UpdatePlan = { set: Partial<StoredService>; updated: string[]; endpoint: string; moving: boolean; rediscover: boolean; method: string; token: string | null };

// Checks the requested settings against the stored ones and works out what to write; writes nothing.
async function planUpdate(ctx: Ctx, row: StoredService, input: UpdateServiceInput, action: string): Promise<UpdatePlan> {
  const requires = input.requires_authorization ?? row.requiresAuthorization;
  const method = requires ? (input.method_authorization ?? row.methodAuthorization) : "";
  if (requires && method !== "Basic" && method !== "Bearer") throw new AppError("invalid_input", `Cannot ${action}: ${NEEDS_METHOD}`);
  if (!requires && input.discovery_token) throw new AppError("invalid_input", `Cannot ${action}: ${TOKEN_NEEDS_AUTHORIZATION}`);
  const endpoint = input.endpoint ?? row.endpoint;
  const moving = endpoint !== row.endpoint;
  if (moving) await assertEndpointFree(ctx, row.id, endpoint, action);
  // A stored credential only goes to the origin it was given for (as fetch does on a redirect).
  if (moving && requires && input.discovery_token === undefined && row.discoveryToken && new URL(endpoint).origin !== new URL(row.endpoint).origin) {
    throw new AppError(
      "invalid_input",
      `Cannot ${action}: the new endpoint is on another origin than the stored discovery_token was given for; give discovery_token again (or "" to remove it)`,
    );
  }
  const rediscover = moving || input.description === "";
  const set: Partial<StoredService> = { requiresAuthorization: requires, methodAuthorization: method };
  const updated: string[] = [];
  if (moving) {
    set.endpoint = endpoint;
    updated.push("endpoint");
  }
  if (input.description && input.description !== row.description) {
    set.description = input.description;
    updated.push("description");
  }
  if (requires !== row.requiresAuthorization) updated.push("requires_authorization");
  if (method !== row.methodAuthorization) updated.push("method_authorization");
  // The token to discover with: a given one, else the stored one (read only when a discovery needs it).
  const given = requires && input.discovery_token !== undefined;
  const token = !requires ? null : given ? input.discovery_token || null : rediscover ? await openDiscoveryToken(ctx, row, action) : null;
  // "" removes the stored token; without authorization there is none.
  if (given || !requires) {
    set.discoveryToken = given && token ? await sealDiscoveryToken(ctx, row, token) : null;
    if (set.discoveryToken !== null || row.discoveryToken !== null) updated.push("discovery_token");
  }
  return { set, updated, endpoint, moving, rediscover, method, token };
}

// Writes a plan: with a discovery first when the endpoint moves or the description is to be read again.
async function applyUpdate(ctx: Ctx, row: StoredService, input: UpdateServiceInput, plan: UpdatePlan, action: string): Promise<{ diff: CatalogueDiff; skipped: SkippedTool[] }> {
  const { services } = ctx.tables;
  // What the registry API shows of the service changes with any setting but the discovery token (its updated_since).
  const touch = () => {
    if (plan.updated.some((f) => f !== "discovery_token")) plan.set.updatedAt = new Date().toISOString();
  };
  try {
    if (!plan.rediscover) {
      touch();
      const written = await ctx.db.update(services).set(plan.set).where(eq(services.id, row.id)).returning({ id: services.id });
      if (written.length === 0) throw new AppError("not_found", `Cannot ${action}: no such service`);
      return { diff: { added: [], removed: [], changed: [], held: [], released: [] }, skipped: [] };
    }
    const found = await discover(ctx, plan.endpoint, { wantDescription: input.description === "", headers: discoveryHeaders(plan.method, plan.token) }, action);
    if (input.description === "" && found.description !== row.description) {
      plan.set.description = found.description;
      plan.updated.push("description");
    }
    touch();
    return { diff: await applyCatalogue(ctx, row.id, row.endpoint, found, plan.set, action), skipped: found.skipped };
  } catch (err) {
    // Another service may have taken the endpoint while this one was being discovered.
    if (plan.moving && isUniqueViolation(err)) await assertEndpointFree(ctx, row.id, plan.endpoint, action);
    throw err;
  }
}

async function assertEndpointFree(ctx: Ctx, serviceId: number, endpoint: string, action: string): Promise<void> {
  const { services } = ctx.tables;
  const [taken] = await ctx.db
    .select({ name: services.name, endpoint: services.endpoint })
    .from(services)
    .where(and(inArray(services.endpoint, endpointSpellings(endpoint)), ne(services.id, serviceId)))
    .limit(1);
  if (taken) throw new AppError("conflict", `Cannot ${action}: service "${taken.name}" already uses endpoint "${taken.endpoint}"`);
}

// Skipped tools named in a result's sentence: at most this many, then "and N more" (a structured result has them all).
const SKIPPED_SHOWN = 10;

/** Skipped tools as words to end a sentence with: `; skipped 1: "bad\u0000name" (reason)`, or "" for none. */
function describeSkipped(skipped: SkippedTool[]): string {
  if (skipped.length === 0) return "";
  const shown = skipped
    .slice(0, SKIPPED_SHOWN)
    .map((s) => `"${s.name}" (${s.reason})`)
    .join(", ");
  const more = skipped.length > SKIPPED_SHOWN ? ` and ${skipped.length - SKIPPED_SHOWN} more` : "";
  return `; skipped ${skipped.length}: ${shown}${more}`;
}

/** A diff as words: `added "a", "b"; removed "c"`, or "no tool changes". */
// A diff as structured content: held and released only when not empty.
function diffData({ held, released, ...diff }: CatalogueDiff) {
  return { ...diff, ...(held.length ? { held } : {}), ...(released.length ? { released } : {}) };
}

function describeDiff(diff: CatalogueDiff): string {
  const names = (list: string[]) => list.map((n) => `"${n}"`).join(", ");
  const parts = (["added", "removed", "changed"] as const).filter((k) => diff[k].length > 0).map((k) => `${k} ${names(diff[k])}`);
  if (diff.held.length) parts.push(`held until an admin approves the change (list_tool_changes) ${names(diff.held)}`);
  if (diff.released.length) parts.push(`released (back to the approved definition) ${names(diff.released)}`);
  return parts.length ? parts.join("; ") : "no tool changes";
}

/**
 * A service's tools with the names of the roles attached to each ({id, name, description, roles}), and
 * their compact JSON text: agents call this often, so the answer is kept while the catalogue is
 * unchanged (shared/catalogue.ts). A held tool (features/tool_pinning) is left out for agents; an admin
 * sees it with held: true and the flags of its change.
 */
async function getTools(ctx: Ctx, input: ServiceNameInput, admin: boolean): Promise<{ list: v.InferOutput<typeof ToolRow>[]; text: string }> {
  return fromCatalogue(
    ctx,
    `get_tools ${admin ? "admin" : "agent"} ${input.service_name}`,
    async () => {
      // Parsed and stringified again: compact whatever the engine's JSON spacing.
      const all = JSON.parse(await toolsJson(ctx, input)) as (v.InferOutput<typeof ToolRow> & { held: unknown })[];
      const flags = all.some((t) => t.held) && admin ? await heldFlags(ctx, input.service_name) : new Map<number, string[]>();
      const list = all.filter((t) => admin || !t.held).map(({ held, ...t }) => (held ? { ...t, held: true as const, flags: flags.get(t.id) ?? [] } : t));
      return { list, text: JSON.stringify(list) };
    },
    (answer) => answer.text.length * 2,
  );
}

// The tools with the rest of their stored definition (title, schemas, annotations), for include_schemas.
async function withDefinitions(ctx: Ctx, serviceName: string, list: v.InferOutput<typeof ToolRow>[]) {
  const { services, tools } = ctx.tables;
  const rows = await ctx.db
    .select({ id: tools.id, ...definitionColumns(tools) })
    .from(tools)
    .innerJoin(services, eq(services.id, tools.serviceId))
    .where(eq(services.name, serviceName));
  const byId = new Map(rows.map((r) => [r.id, r]));
  return list.map((t) => {
    const d = byId.get(t.id);
    return { ...t, title: d?.title ?? null, input_schema: d?.inputSchema ?? null, output_schema: d?.outputSchema ?? null, annotations: d?.annotations ?? null };
  });
}

// The flags of the open change of each held tool of a service, by tool id.
async function heldFlags(ctx: Ctx, serviceName: string): Promise<Map<number, string[]>> {
  const { services, tools, toolChanges } = ctx.tables;
  const rows = await ctx.db
    .select({ id: tools.id, flags: toolChanges.flags })
    .from(toolChanges)
    .innerJoin(tools, eq(tools.id, toolChanges.toolId))
    .innerJoin(services, eq(services.id, tools.serviceId))
    .where(and(eq(services.name, serviceName), inArray(toolChanges.status, ["pending", "rejected"])));
  return new Map(rows.map((r) => [r.id, r.flags as string[]]));
}

// The tools as JSON text, built by the database.
async function toolsJson(ctx: Ctx, input: ServiceNameInput): Promise<string> {
  // One statement prepared once per registry, its answer built by the database: agents call this often.
  const row = await firstRow(
    prepareOnce(ctx, "get_tools", () => {
      const { services, tools, toolRoles, roles } = ctx.tables;
      const roleNames = sql`(select ${jsonListOf(ctx.engine, roles.name, sql`${roles.name}`)} from ${toolRoles}
      inner join ${roles} on ${roles.id} = ${toolRoles.roleId} where ${toolRoles.toolId} = ${tools.id})`;
      const fields = { id: tools.id, name: tools.name, description: tools.description, roles: asJson(ctx.engine, roleNames), held: tools.held };
      // eq(), not a bare "${a} = ${b}": drizzle leaves the columns of a one-table select's own fields unqualified.
      return ctx.db
        .select({ tools: sql<string>`(select ${jsonArrayOf(ctx.engine, fields, sql`${tools.id}`)} from ${tools} where ${eq(tools.serviceId, services.id)})` })
        .from(services)
        .where(eq(services.name, sql.placeholder("name")))
        .limit(1);
    }),
    { name: input.service_name },
  );
  if (!row) throw new AppError("not_found", `Cannot get tools of service "${input.service_name}": no such service`);
  return row.tools;
}

/** Removes a service; its tools, their role links and its users' tokens go with it (foreign keys). */
async function removeService(ctx: Ctx, input: ServiceNameInput): Promise<void> {
  const { services } = ctx.tables;
  const deleted = await ctx.db.delete(services).where(eq(services.name, input.service_name)).returning({ id: services.id });
  if (deleted.length === 0) throw new AppError("not_found", `Cannot remove service "${input.service_name}": no such service`);
  notifyCatalogueChanged(ctx);
}

const tools = [
  defineTool({
    name: "add_service",
    title: "Add service",
    description:
      "Register an MCP service: its tools are discovered and stored. method_authorization is Basic or Bearer when requires_authorization is true. " +
      'discovery_token: a credential for a service that refuses to list its tools anonymously, sent as "Authorization: <method_authorization> <token>" ' +
      "when discovering and refreshing it; stored encrypted, never shown.",
    input: AddServiceInput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
    async run(ctx, input, audit) {
      const { tools: count, skipped } = await addService(ctx, input, audit);
      return { text: `Service "${input.service_name}" added with ${count} tool${count === 1 ? "" : "s"}${describeSkipped(skipped)}.` };
    },
  }),
  defineTool({
    name: "list_services",
    title: "List services",
    description:
      "List registered services with their endpoint and description; with include_health, also each one's status (ok, unreachable), " +
      "last successful discovery, last error, consecutive failures and number of tools.",
    input: ListServicesInput,
    output: v.object({ services: v.array(ServiceRow) }),
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      const counts = input.include_health ? await toolCounts(ctx) : null;
      const list = (await listServices(ctx)).map((s) => ({
        service_name: s.name,
        endpoint: s.endpoint,
        description: s.description,
        ...(counts ? { ...health(s), tools: counts.get(s.id) ?? 0 } : {}),
      }));
      return { text: JSON.stringify(list), data: { services: list } };
    },
  }),
  defineTool({
    name: "get_service",
    title: "Get service",
    description:
      "Show one service: endpoint, description, transport, authorization settings, number of tools, and its health " +
      "(status ok or unreachable, last successful discovery, last error, consecutive failures).",
    input: ServiceNameInput,
    output: ServiceDetails,
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      const service = await getService(ctx, input);
      return { text: JSON.stringify(service), data: service };
    },
  }),
  defineTool({
    name: "get_tools",
    title: "Get tools of a service",
    description:
      "List the tools of a service with their id, description and the roles attached to each; with include_schemas, also each one's title, " +
      "input_schema, output_schema and annotations. A tool held for review (list_tool_changes) is shown to admins only, with held and flags.",
    input: GetToolsInput,
    output: v.object({ tools: v.array(ToolRow) }),
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx, input, audit) {
      const { list, text } = await getTools(ctx, input, audit.entry.caller.principal === "admin");
      if (!input.include_schemas) return { text, data: { tools: list } };
      const withSchemas = await withDefinitions(ctx, input.service_name, list);
      return { text: JSON.stringify(withSchemas), data: { tools: withSchemas } };
    },
  }),
  defineTool({
    name: "refresh_service",
    title: "Refresh service",
    description:
      "Discover a service's tools again now and apply the difference: new tools are added, vanished ones removed with their role " +
      "attachments, changed ones updated; the tools that remain keep their ids and attachments. A failure is recorded in the service's health and its tools are kept.",
    input: ServiceNameInput,
    output: v.object({ service_name: v.string(), tools: v.number(), ...Diff, ...Skipped }),
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: true },
    async run(ctx, input) {
      const { tools, skipped, ...diff } = await refreshService(ctx, input);
      return {
        text: `Service "${input.service_name}" refreshed (${tools} tool${tools === 1 ? "" : "s"}): ${describeDiff(diff)}${describeSkipped(skipped)}.`,
        data: { service_name: input.service_name, tools, ...diffData(diff), ...(skipped.length ? { skipped } : {}) },
      };
    },
  }),
  defineTool({
    name: "update_service",
    title: "Update service",
    description:
      "Change a service's endpoint, description or authorization settings without losing its tools, their ids or role attachments. " +
      'A new endpoint is discovered first and must answer; description "" reads it from the service again; discovery_token "" removes the stored one.',
    input: UpdateServiceInput,
    output: v.object({ service_name: v.string(), updated: v.array(v.string()), ...Diff, ...Skipped }),
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: true },
    async run(ctx, input) {
      const { updated, skipped, ...diff } = await updateService(ctx, input);
      const what = updated.length ? updated.join(", ") : "nothing changed";
      return {
        text: `Service "${input.service_name}" updated (${what})${hasChanges(diff) ? `: ${describeDiff(diff)}` : ""}${describeSkipped(skipped)}.`,
        data: { service_name: input.service_name, updated, ...diffData(diff), ...(skipped.length ? { skipped } : {}) },
      };
    },
  }),
  defineTool({
    name: "remove_service",
    title: "Remove service",
    description: "Remove a service with its tools, their role attachments and the tokens users stored for it.",
    input: ServiceNameInput,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
    async run(ctx, input) {
      await removeService(ctx, input);
      return { text: `Service "${input.service_name}" removed.` };
    },
  }),
];

const encoder = new TextEncoder();

/**
 * GET /list_services: {"services": {"<name>": {"transport", "url"}}} — no other key per entry. Agents poll
 * it: the body is kept per catalogue generation (shared/db/answers.ts), which a change of any service's
 * name, endpoint or transport raises, on any instance (the triggers of migration 0007).
 */
const routes = new Hono<AppEnv>().get("/list_services", async (c) => {
  const ctx = c.get("ctx");
  const body = await fromCatalogue(
    ctx,
    "list_services",
    async () => {
      const out: Record<string, { transport: string; url: string }> = {};
      for (const s of await listServices(ctx)) out[s.name] = { transport: s.transport, url: s.endpoint };
      return encoder.encode(JSON.stringify({ services: out }));
    },
    (bytes) => bytes.byteLength,
  );
  return c.body(body, 200, { "content-type": "application/json" });
});

/** Services: tools, /list_services, the start-up check of discovery tokens, the background refresher. */
export const services: Feature = { name: "services", tools, routes, prepare: reencryptDiscoveryTokens, start: startRefresher };
