/** Services: register MCP services (discovering their tools), list them, show their tools, remove them. */
import { asc, eq, or, sql } from "drizzle-orm";
import { Hono } from "hono";
import * as v from "valibot";
import type { Ctx } from "../../shared/context.ts";
import { atomic, isUniqueViolation } from "../../shared/db/db.ts";
import { AppError } from "../../shared/errors.ts";
import { notifyCatalogueChanged } from "../../shared/hook.ts";
import type { AppEnv } from "../../shared/http.ts";
import { defineTool } from "../../shared/mcp.ts";
import { nameSchema } from "../../shared/validate.ts";
import { discoverService } from "../discovery/discovery.ts";

export const ServiceName = nameSchema(128);

export const Endpoint = v.pipe(
  v.string("must be a string"),
  v.trim(),
  v.nonEmpty("must not be empty"),
  v.maxLength(2048, "must be at most 2048 characters"),
  // Only http(s): the predecessor ran a local path as a subprocess, which is never done here.
  // An empty endpoint is already reported by nonEmpty (valibot runs every check).
  v.check((s) => s === "" || (URL.canParse(s) && /^https?:$/.test(new URL(s).protocol)), "must be an http(s) URL"),
);

export const AddServiceInput = v.pipe(
  v.object({
    service_name: ServiceName,
    endpoint: Endpoint,
    description: v.optional(v.pipe(v.string("must be a string"), v.trim(), v.maxLength(8192, "must be at most 8192 characters")), ""),
    requires_authorization: v.optional(v.boolean("must be true or false"), false),
    method_authorization: v.optional(v.string("must be a string"), ""),
  }),
  v.check((i) => !i.requires_authorization || i.method_authorization === "Basic" || i.method_authorization === "Bearer",
    'method_authorization must be "Basic" or "Bearer" when requires_authorization is true'),
  // Without authorization there is no method: store "" whatever was sent.
  v.transform((i) => ({ ...i, method_authorization: i.requires_authorization ? i.method_authorization : "" })),
);
export type AddServiceInput = v.InferOutput<typeof AddServiceInput>;

export const ServiceNameInput = v.object({ service_name: ServiceName });
export type ServiceNameInput = v.InferOutput<typeof ServiceNameInput>;

const ServiceRow = v.object({ service_name: v.string(), endpoint: v.string(), description: v.string() });
const ToolRow = v.object({ id: v.number(), name: v.string(), description: v.string(), roles: v.array(v.string()) });

/** Finds a service by name or throws not_found. */
export async function findService(ctx: Ctx, name: string, action = "find service") {
  const { services } = ctx.tables;
  const [row] = await ctx.db.select().from(services).where(eq(services.name, name)).limit(1);
  if (!row) throw new AppError("not_found", `Cannot ${action} "${name}": no such service`);
  return row;
}

/** Discovers the service's tools, then writes the service and its tools in one transaction. */
export async function addService(ctx: Ctx, input: AddServiceInput): Promise<{ tools: number }> {
  const { services, tools } = ctx.tables;
  const action = `add service "${input.service_name}"`;
  await assertFree(ctx, input, action);
  const found = await discoverService(input.endpoint, { timeoutMs: ctx.config.discoveryTimeoutMs, wantDescription: input.description === "" })
    .catch((err) => {
      throw err instanceof AppError ? new AppError(err.code, `Cannot ${action}: ${err.message}`) : err;
    });
  const serviceId = sql`(select ${services.id} from ${services} where ${services.name} = ${input.service_name})`;
  try {
    await atomic(ctx.db, (q) => [
      q.insert(services).values({
        name: input.service_name,
        endpoint: input.endpoint,
        description: input.description || found.description,
        transport: found.transport,
        requiresAuthorization: input.requires_authorization,
        methodAuthorization: input.method_authorization,
        lastDiscoveredAt: new Date().toISOString(),
      }),
      ...found.tools.map((t) => q.insert(tools).values({ serviceId, ...t })),
    ]);
  } catch (err) {
    // Another request may have taken the name or endpoint while we were discovering.
    if (isUniqueViolation(err)) await assertFree(ctx, input, action);
    throw err;
  }
  notifyCatalogueChanged(ctx);
  return { tools: found.tools.length };
}

async function assertFree(ctx: Ctx, input: AddServiceInput, action: string): Promise<void> {
  const { services } = ctx.tables;
  const [taken] = await ctx.db.select({ name: services.name, endpoint: services.endpoint }).from(services)
    .where(or(eq(services.name, input.service_name), eq(services.endpoint, input.endpoint))).limit(1);
  if (!taken) return;
  if (taken.name === input.service_name) throw new AppError("conflict", `Cannot ${action}: a service with that name already exists`);
  throw new AppError("conflict", `Cannot ${action}: service "${taken.name}" already uses endpoint "${input.endpoint}"`);
}

/** All services, by name. */
export async function listServices(ctx: Ctx) {
  const { services } = ctx.tables;
  return ctx.db.select({ name: services.name, endpoint: services.endpoint, description: services.description, transport: services.transport })
    .from(services).orderBy(asc(services.name));
}

/** A service's tools with the names of the roles attached to each. */
export async function getTools(ctx: Ctx, input: ServiceNameInput) {
  const { tools, toolRoles, roles } = ctx.tables;
  const service = await findService(ctx, input.service_name, "get tools of service");
  const rows = await ctx.db.select({ id: tools.id, name: tools.name, description: tools.description, role: roles.name })
    .from(tools).leftJoin(toolRoles, eq(toolRoles.toolId, tools.id)).leftJoin(roles, eq(roles.id, toolRoles.roleId))
    .where(eq(tools.serviceId, service.id)).orderBy(asc(tools.id), asc(roles.name));
  const byId = new Map<number, { id: number; name: string; description: string; roles: string[] }>();
  for (const r of rows) {
    const tool = byId.get(r.id) ?? { id: r.id, name: r.name, description: r.description, roles: [] };
    if (r.role) tool.roles.push(r.role);
    byId.set(r.id, tool);
  }
  return [...byId.values()];
}

/** Removes a service; its tools, their role links and its users' tokens go with it (foreign keys). */
export async function removeService(ctx: Ctx, input: ServiceNameInput): Promise<void> {
  const { services } = ctx.tables;
  const deleted = await ctx.db.delete(services).where(eq(services.name, input.service_name)).returning({ id: services.id });
  if (deleted.length === 0) throw new AppError("not_found", `Cannot remove service "${input.service_name}": no such service`);
  notifyCatalogueChanged(ctx);
}

export const servicesTools = [
  defineTool({
    name: "add_service",
    title: "Add service",
    description: "Register an MCP service: its tools are discovered and stored. method_authorization is Basic or Bearer when requires_authorization is true.",
    input: AddServiceInput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: true },
    async run(ctx, input) {
      const { tools: count } = await addService(ctx, input);
      return { text: `Service "${input.service_name}" added with ${count} tool${count === 1 ? "" : "s"}.` };
    },
  }),
  defineTool({
    name: "list_services",
    title: "List services",
    description: "List registered services with their endpoint and description.",
    input: v.object({}),
    output: v.object({ services: v.array(ServiceRow) }),
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx) {
      const list = (await listServices(ctx)).map((s) => ({ service_name: s.name, endpoint: s.endpoint, description: s.description }));
      return { text: JSON.stringify(list), data: { services: list } };
    },
  }),
  defineTool({
    name: "get_tools",
    title: "Get tools of a service",
    description: "List the tools of a service with their id, description and the roles attached to each.",
    input: ServiceNameInput,
    output: v.object({ tools: v.array(ToolRow) }),
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      const list = await getTools(ctx, input);
      return { text: JSON.stringify(list), data: { tools: list } };
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

/** GET /list_services: {"services": {"<name>": {"transport", "url"}}} — no other key per entry. */
export const servicesRoutes = new Hono<AppEnv>().get("/list_services", async (c) => {
  const out: Record<string, { transport: string; url: string }> = {};
  for (const s of await listServices(c.get("ctx"))) out[s.name] = { transport: s.transport, url: s.endpoint };
  return c.json({ services: out });
});
