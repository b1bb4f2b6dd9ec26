/**
 * The benchmark's data set (bench/shape.ts), written straight through the store (no discovery): services
 * with their tools, roles attached to tools, users with a role and a token each, really encrypted and bound
 * to its row (sealToken, as authorize_user_to_service stores it). Written in multi-row statements, many
 * per commit: the large shape's 100,000 tokens one commit each would take minutes.
 */
import type { BatchItem } from "drizzle-orm/batch";
import { sealToken } from "../features/credentials/credentials.ts";
import { digestOf } from "../features/tool_pinning/definition.ts";
import type { Ctx } from "../shared/context.ts";
import type { Db } from "../shared/db/db.ts";
import { DOWNSTREAM_VERSION, rolePrompt, roleName, roleToolRange, type Shape, serviceName, tokenOf, tokenService, toolDefinition, userName } from "./shape.ts";

/** What the load scenarios ask for, and what the answers must be. */
export type Fixture = {
  shape: Shape;
  services: string[];
  /** One per user: the service its token is for, and the token /token must return. */
  tokens: { user: string; service: string; token: string; method: string }[];
  users: { user: string; role: string }[];
  /** Every role: its prompt (/system_prompt_for_role) and how many tools it has (/tools_for_role). */
  roles: { name: string; prompt: string; tools: number }[];
  /** The role with bigRoleTools tools. */
  bigRole: string;
};

/** Where the seeded services are: by default nowhere (port 9, where nothing listens: nothing calls them). */
export type SeedOptions = { endpoint?: (i: number) => string };

// Rows per statement (well under every engine's limit of bound parameters) and statements per commit.
const ROWS = 500;
const PER_COMMIT = 20;

// Multi-row inserts, PER_COMMIT statements in one atomic unit: each statement's result (rows with .returning()).
async function insertAll<T>(ctx: Ctx, rows: T[], statement: (q: Db, slice: T[]) => BatchItem<"sqlite">): Promise<unknown[]> {
  const results: unknown[] = [];
  for (let i = 0; i < rows.length; i += ROWS * PER_COMMIT) {
    const unit = rows.slice(i, i + ROWS * PER_COMMIT);
    const out = await ctx.atomic((q) => {
      const statements: BatchItem<"sqlite">[] = [];
      for (let k = 0; k < unit.length; k += ROWS) statements.push(statement(q, unit.slice(k, k + ROWS)));
      return statements as [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]];
    });
    results.push(...out);
  }
  return results;
}

// The ids a run of inserts returned, in insertion order (ids are assigned in the order rows are written).
const idsOf = (results: unknown[]) => results.flatMap((r) => (r as { id: number }[]).map((row) => row.id)).sort((a, b) => a - b);

/** Writes the data set into an empty registry database and returns what the scenarios need to know. */
export async function seed(ctx: Ctx, shape: Shape, options: SeedOptions = {}): Promise<Fixture> {
  const { services, tools, roles, toolRoles, users, userTokens } = ctx.tables;
  const endpoint = options.endpoint ?? ((i: number) => `http://127.0.0.1:9/${serviceName(shape, i)}/mcp`);
  const serviceRows = Array.from({ length: shape.services }, (_, i) => ({
    name: serviceName(shape, i),
    endpoint: endpoint(i),
    description: `Service ${i}: a seeded service of the benchmark with a description of ordinary length.`,
    transport: "streamable_http" as const,
    requiresAuthorization: i % 2 === 0,
    methodAuthorization: i % 2 === 0 ? (i % 4 === 0 ? "Bearer" : "Basic") : "",
    lastDiscoveredAt: new Date().toISOString(),
    // The large shape's services answer (bench/downstream.ts): stored as they report it, a refresh finds nothing new.
    ...(options.endpoint ? { serverVersion: DOWNSTREAM_VERSION } : {}),
  }));
  const serviceIds = idsOf(await insertAll(ctx, serviceRows, (q, slice) => q.insert(services).values(slice).returning({ id: services.id })));

  // With the digest discovery stores: without it, each start-up of the registry would first compute them
  // all (tool_pinning's fillDigests: 100,000 of them on the large shape), which is not what a restart costs.
  const toolRows = serviceIds.flatMap((serviceId, i) =>
    Array.from({ length: shape.toolsPerService }, (_, j) => {
      const tool = { ...toolDefinition(i, j), outputSchema: null };
      return { serviceId, ...tool, digest: digestOf(tool) };
    }),
  );
  const toolIds = idsOf(await insertAll(ctx, toolRows, (q, slice) => q.insert(tools).values(slice).returning({ id: tools.id })));

  const roleRows = Array.from({ length: shape.roles }, (_, r) => ({ name: roleName(shape, r), defaultSystemPrompt: rolePrompt(shape, r) }));
  const roleIds = idsOf(await insertAll(ctx, roleRows, (q, slice) => q.insert(roles).values(slice).returning({ id: roles.id })));
  const links = roleIds.flatMap((roleId, r) => {
    const { first, count } = roleToolRange(shape, r);
    return toolIds.slice(first, first + count).map((toolId) => ({ toolId, roleId }));
  });
  await insertAll(ctx, links, (q, slice) => q.insert(toolRoles).values(slice));

  const userRows = Array.from({ length: shape.users }, (_, u) => ({ userId: userName(shape, u), roleId: roleIds[u % roleIds.length] }));
  const userIds = idsOf(await insertAll(ctx, userRows, (q, slice) => q.insert(users).values(slice).returning({ id: users.id })));

  const updatedAt = new Date().toISOString();
  const tokenRows: { userId: number; serviceId: number; ciphertext: string; updatedAt: string }[] = [];
  // Encrypted a thousand at a time: WebCrypto's calls are asynchronous, one by one they would wait in turn.
  for (let u = 0; u < shape.users; u += 1000) {
    const batch = Array.from({ length: Math.min(1000, shape.users - u) }, (_, k) => u + k);
    const sealed = await Promise.all(batch.map((v) => sealToken(ctx, serviceIds[tokenService(shape, v)], userName(shape, v), tokenOf(shape, v))));
    for (const [k, v] of batch.entries()) tokenRows.push({ userId: userIds[v], serviceId: serviceIds[tokenService(shape, v)], ciphertext: sealed[k], updatedAt });
  }
  await insertAll(ctx, tokenRows, (q, slice) => q.insert(userTokens).values(slice));

  return {
    shape,
    services: serviceRows.map((s) => s.name),
    tokens: Array.from({ length: shape.users }, (_, u) => ({
      user: userName(shape, u),
      service: serviceName(shape, tokenService(shape, u)),
      token: tokenOf(shape, u),
      method: serviceRows[tokenService(shape, u)].methodAuthorization,
    })),
    users: userRows.map((row, u) => ({ user: row.userId, role: roleName(shape, u % shape.roles) })),
    roles: roleRows.map((row, r) => ({ name: row.name, prompt: row.defaultSystemPrompt, tools: roleToolRange(shape, r).count })),
    bigRole: roleName(shape, 0),
  };
}
