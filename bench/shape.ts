/**
 * The benchmark's two data shapes and the names and tool definitions they are made of. No imports: the fake
 * downstream (bench/downstream.ts) lists the very tools seed.ts stores, from these same functions.
 */

/** How much data the benchmark seeds. Role 0 has bigRoleTools tools; every other role roleTools, from tool (r * roleTools) on. */
export type Shape = { name: "small" | "large"; services: number; toolsPerService: number; roles: number; users: number; bigRoleTools: number; roleTools: number };

/** The data set of the first issue: 100 services x 20 tools, 20 roles (one on 200 tools, the others on one service's 20), 1,000 users with tokens. */
export const SMALL: Shape = { name: "small", services: 100, toolsPerService: 20, roles: 20, users: 1000, bigRoleTools: 200, roleTools: 20 };

/** Issue 21's scale: 10,000 services x 10 tools, 200 roles x 500 tools (each tool on one role), 100,000 users with tokens. */
export const LARGE: Shape = { name: "large", services: 10_000, toolsPerService: 10, roles: 200, users: 100_000, bigRoleTools: 500, roleTools: 500 };

const pad = (n: number, width: number) => String(n).padStart(width, "0");
// The small shape's widths (svc-000, role-00, user-0000), wider only where a shape has more.
const width = (min: number, count: number) => Math.max(min, String(count - 1).length);

export const serviceName = (shape: Shape, i: number) => `svc-${pad(i, width(3, shape.services))}`;
export const roleName = (shape: Shape, r: number) => `role-${pad(r, width(2, shape.roles))}`;
export const userName = (shape: Shape, u: number) => `user-${pad(u, width(4, shape.users))}`;
export const rolePrompt = (shape: Shape, r: number) => `You assist users of ${roleName(shape, r)}. Be brief.`;
// Every other service requires authorization; users' tokens are for those.
export const tokenService = (shape: Shape, u: number) => (u % Math.ceil(shape.services / 2)) * 2;
export const tokenOf = (shape: Shape, u: number) => `tok-${userName(shape, u)}-${serviceName(shape, tokenService(shape, u))}-${pad((u * 7919) % 100000, 5)}`;

/** Tool j of service i, as a service lists it (the downstream) and as seed.ts stores it. */
export function toolDefinition(i: number, j: number) {
  return {
    name: `tool_${pad(j, 2)}`,
    title: `Tool ${j} of service ${i}`,
    description: `Tool ${j} of service ${i}: looks something up for the query and returns the matches as JSON.`,
    inputSchema: {
      type: "object" as const,
      properties: { query: { type: "string", description: "What to look for" }, limit: { type: "integer", minimum: 1 } },
      required: ["query"],
    },
    annotations: { readOnlyHint: true },
  };
}

/** The version the downstream reports (serverInfo.version); the large seed stores it, so a refresh finds nothing new. */
export const DOWNSTREAM_VERSION = "1.0.0";

/** The tools (global indexes) role r is attached to. */
export function roleToolRange(shape: Shape, r: number): { first: number; count: number } {
  if (r === 0) return { first: 0, count: shape.bigRoleTools };
  return { first: (r * shape.roleTools) % (shape.services * shape.toolsPerService), count: shape.roleTools };
}

/**
 * Request i's key among n, spread over all n (a prime stride: 7919 divides none of the shapes' counts),
 * so consecutive requests hit unrelated rows and a long run reaches every one: no hot key.
 */
export function spread(i: number, n: number): number {
  return (i * 7919) % n;
}
