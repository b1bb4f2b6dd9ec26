/**
 * The benchmark's data set, written straight through the store (no discovery): services with their tools,
 * roles (one attached to many tools), users with a role and an encrypted token each (sealUserToken).
 */
import { sealUserToken } from "../features/credentials/credentials.ts";
import type { Ctx } from "../shared/context.ts";

/** How much data the benchmark seeds. */
export type Shape = { services: number; toolsPerService: number; roles: number; users: number; bigRoleTools: number };

/** The data set the issue asks for: 100 services x 20 tools, 20 roles, 1,000 users with tokens, a role on 200 tools. */
export const SHAPE: Shape = { services: 100, toolsPerService: 20, roles: 20, users: 1000, bigRoleTools: 200 };

/** What the load scenarios ask for, and what the answers must be. */
export type Fixture = {
  services: string[];
  /** One per user: the service its token is for, and the token /token must return. */
  tokens: { user: string; service: string; token: string; method: string }[];
  users: { user: string; role: string }[];
  bigRole: string;
};

const pad = (n: number, width: number) => String(n).padStart(width, "0");
const serviceName = (i: number) => `svc-${pad(i, 3)}`;
const roleName = (i: number) => `role-${pad(i, 2)}`;
const userName = (i: number) => `user-${pad(i, 4)}`;
// Every other service requires authorization; users' tokens are for those.
const tokenService = (u: number, shape: Shape) => (u % Math.ceil(shape.services / 2)) * 2;

// Multi-row inserts in slices, well under every engine's limit of bound parameters.
async function insertAll<T>(rows: T[], insert: (slice: T[]) => Promise<unknown>, size = 200): Promise<void> {
  for (let i = 0; i < rows.length; i += size) await insert(rows.slice(i, i + size));
}

/** Writes the data set into an empty registry database and returns what the scenarios need to know. */
export async function seed(ctx: Ctx, shape: Shape = SHAPE): Promise<Fixture> {
  const { services, tools, roles, toolRoles, users } = ctx.tables;
  const serviceRows = Array.from({ length: shape.services }, (_, i) => ({
    name: serviceName(i),
    // Nothing listens there: the benchmark never calls a seeded service.
    endpoint: `http://127.0.0.1:9/${serviceName(i)}/mcp`,
    description: `Service ${i}: a seeded service of the benchmark with a description of ordinary length.`,
    transport: "streamable_http" as const,
    requiresAuthorization: i % 2 === 0,
    methodAuthorization: i % 2 === 0 ? (i % 4 === 0 ? "Bearer" : "Basic") : "",
    lastDiscoveredAt: new Date().toISOString(),
  }));
  const serviceIds: number[] = [];
  await insertAll(serviceRows, async (slice) => {
    for (const r of await ctx.db.insert(services).values(slice).returning({ id: services.id })) serviceIds.push(r.id);
  });

  const toolRows = serviceIds.flatMap((serviceId, i) =>
    Array.from({ length: shape.toolsPerService }, (_, j) => ({
      serviceId,
      name: `tool_${pad(j, 2)}`,
      title: `Tool ${j} of service ${i}`,
      description: `Tool ${j} of service ${i}: looks something up for the query and returns the matches as JSON.`,
      inputSchema: { type: "object", properties: { query: { type: "string", description: "What to look for" }, limit: { type: "integer", minimum: 1 } }, required: ["query"] },
      outputSchema: null,
      annotations: { readOnlyHint: true },
    })),
  );
  const toolIds: number[] = [];
  await insertAll(toolRows, async (slice) => {
    for (const r of await ctx.db.insert(tools).values(slice).returning({ id: tools.id })) toolIds.push(r.id);
  });

  const roleRows = Array.from({ length: shape.roles }, (_, r) => ({ name: roleName(r), defaultSystemPrompt: `You assist users of ${roleName(r)}. Be brief.` }));
  const roleIds = (await ctx.db.insert(roles).values(roleRows).returning({ id: roles.id })).map((r) => r.id);
  // The big role gets the first bigRoleTools tools; every other role the tools of one service.
  const links = toolIds.slice(0, shape.bigRoleTools).map((toolId) => ({ toolId, roleId: roleIds[0] }));
  for (let r = 1; r < roleIds.length; r++) {
    const first = (r % shape.services) * shape.toolsPerService;
    for (const toolId of toolIds.slice(first, first + shape.toolsPerService)) links.push({ toolId, roleId: roleIds[r] });
  }
  await insertAll(links, (slice) => ctx.db.insert(toolRoles).values(slice));

  const userRows = Array.from({ length: shape.users }, (_, u) => ({ userId: userName(u), roleId: roleIds[u % roleIds.length] }));
  await insertAll(userRows, (slice) => ctx.db.insert(users).values(slice));

  const fixture: Fixture = { services: serviceRows.map((s) => s.name), tokens: [], users: [], bigRole: roleName(0) };
  for (let u = 0; u < shape.users; u++) {
    const s = tokenService(u, shape);
    const token = `tok-${userName(u)}-${serviceName(s)}-${pad((u * 7919) % 100000, 5)}`;
    // Really encrypted and bound to its row, as authorize_user_to_service stores it.
    await sealUserToken(ctx, serviceIds[s], userName(u), token, { replace: false });
    fixture.tokens.push({ user: userName(u), service: serviceName(s), token, method: serviceRows[s].methodAuthorization });
    fixture.users.push({ user: userName(u), role: roleName(u % roleIds.length) });
  }
  return fixture;
}
