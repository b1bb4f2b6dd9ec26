/**
 * What the gateway shows a user: the tools attached to the user's role, across services, under their gateway
 * names (names.ts); and, for a call, the service, the attachment and the user's credential read anew.
 */
import { ErrorCode, McpError, type Tool as ListedTool } from "@modelcontextprotocol/sdk/types.js";
import { and, asc, eq, sql } from "drizzle-orm";
import { type Ctx, firstRow, prepareOnce } from "../../shared/context.ts";
import { fromCatalogue } from "../../shared/db/answers.ts";
import { type Named, uniqueNames } from "./names.ts";

/** Tools per tools/list page: a role with more is listed over several pages (nextCursor). */
const PAGE_SIZE = 100;

/** A tool of the listing: the service it is on (row id, name) and its name there. */
export type Listed = Named & { serviceId: number };
/** The listing of one role: tools/list entries in order, and what each gateway name stands for. */
type Listing = { tools: ListedTool[]; byName: Map<string, Listed> };

/** The row id of a user's role, or null (unknown user, or no role): no role, no tools. */
export async function roleOf(ctx: Ctx, userId: string): Promise<number | null> {
  const row = await firstRow(
    prepareOnce(ctx, "gateway_role_of_user", () => {
      const { users } = ctx.tables;
      return ctx.db
        .select({ roleId: users.roleId })
        .from(users)
        .where(eq(users.userId, sql.placeholder("userId")))
        .limit(1);
    }),
    { userId },
  );
  return row?.roleId ?? null;
}

/** The gateway's listing for a role, kept while the catalogue is unchanged (shared/db/answers.ts). */
export function listingOf(ctx: Ctx, roleId: number): Promise<Listing> {
  return fromCatalogue(ctx, `gateway:${roleId}`, () => buildListing(ctx, roleId), listingSize);
}

async function buildListing(ctx: Ctx, roleId: number): Promise<Listing> {
  const rows = await prepareOnce(ctx, "gateway_listing", () => {
    const { services, tools, toolRoles } = ctx.tables;
    return (
      ctx.db
        .select({
          serviceId: services.id,
          service: services.name,
          tool: tools.name,
          title: tools.title,
          description: tools.description,
          inputSchema: tools.inputSchema,
          outputSchema: tools.outputSchema,
          annotations: tools.annotations,
        })
        .from(toolRoles)
        .innerJoin(tools, eq(tools.id, toolRoles.toolId))
        .innerJoin(services, eq(services.id, tools.serviceId))
        // A tool held for review (features/tool_pinning) is neither listed nor called.
        .where(and(eq(toolRoles.roleId, sql.placeholder("roleId")), eq(tools.held, false)))
        .orderBy(asc(services.name), asc(tools.name))
    );
  }).execute({ roleId });
  const byName = uniqueNames(rows);
  const listed = [...byName].map(([name, r]) => ({
    name,
    ...(r.title ? { title: r.title } : {}),
    description: r.description,
    inputSchema: (r.inputSchema as ListedTool["inputSchema"] | null) ?? { type: "object" as const },
    ...(r.outputSchema ? { outputSchema: r.outputSchema as ListedTool["outputSchema"] } : {}),
    ...(r.annotations ? { annotations: r.annotations as ListedTool["annotations"] } : {}),
  }));
  return { tools: listed, byName: new Map([...byName].map(([name, r]) => [name, { serviceId: r.serviceId, service: r.service, tool: r.tool }])) };
}

function listingSize(listing: Listing): number {
  return listing.tools.reduce((bytes, t) => bytes + JSON.stringify(t).length, 0);
}

/** One page of a listing: cursors are opaque to clients (base64url of an offset); a bad one is -32602. */
export function page(listing: Listing, cursor: string | undefined): { tools: ListedTool[]; nextCursor?: string } {
  let offset = 0;
  if (cursor !== undefined) {
    const m = /^o(\d{1,9})$/.exec(Buffer.from(cursor, "base64url").toString());
    if (!m) throw new McpError(ErrorCode.InvalidParams, "Invalid params: the cursor was not given by this gateway's tools/list");
    offset = Number(m[1]);
  }
  const next = offset + PAGE_SIZE;
  return { tools: listing.tools.slice(offset, next), ...(next < listing.tools.length ? { nextCursor: Buffer.from(`o${next}`).toString("base64url") } : {}) };
}

/** What a call needs, read in one query at call time: the service, whether the tool is still attached to the role, the user's sealed credential. */
export type Target = {
  endpoint: string;
  transport: "streamable_http" | "sse";
  requiresAuthorization: boolean;
  method: string;
  attached: boolean;
  ciphertext: string | null;
  userRowId: number | null;
};

/** The call target of a listed tool for a user and role, or undefined when the service is gone. */
export function targetOf(ctx: Ctx, listed: Listed, userId: string, roleId: number): Promise<Target | undefined> {
  const query = prepareOnce(ctx, "gateway_target", () => {
    const { services, tools, toolRoles, users, userTokens } = ctx.tables;
    const attached = sql<boolean>`exists (select 1 from ${toolRoles} inner join ${tools} on ${tools.id} = ${toolRoles.toolId}
      where ${tools.serviceId} = ${services.id} and ${tools.name} = ${sql.placeholder("tool")} and ${toolRoles.roleId} = ${sql.placeholder("roleId")}
      and ${eq(tools.held, false)})`;
    return ctx.db
      .select({
        endpoint: services.endpoint,
        transport: services.transport,
        requiresAuthorization: services.requiresAuthorization,
        method: services.methodAuthorization,
        attached,
        ciphertext: userTokens.ciphertext,
        userRowId: users.id,
      })
      .from(services)
      .leftJoin(users, eq(users.userId, sql.placeholder("userId")))
      .leftJoin(userTokens, and(eq(userTokens.serviceId, services.id), eq(userTokens.userId, users.id)))
      .where(eq(services.id, sql.placeholder("serviceId")))
      .limit(1);
  });
  return firstRow(query, { serviceId: listed.serviceId, tool: listed.tool, roleId, userId }).then((row) =>
    row ? { ...row, attached: Boolean(row.attached), requiresAuthorization: Boolean(row.requiresAuthorization) } : undefined,
  );
}
