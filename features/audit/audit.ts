/** Audit: the admin's view of the audit trail (changes and token reads), filtered and paginated. */
import { and, desc, eq, gte, lt, type SQL, sql } from "drizzle-orm";
import { Hono } from "hono";
import * as v from "valibot";
import type { Ctx } from "../../shared/context.ts";
import type { AppEnv } from "../../shared/http.ts";
import { defineTool } from "../../shared/mcp.ts";

export const ListAuditEventsInput = v.object({
  action: v.optional(v.pipe(v.string("must be a string"), v.trim(), v.maxLength(64, "must be at most 64 characters"))),
  target: v.optional(v.pipe(v.string("must be a string"), v.trim(), v.maxLength(256, "must be at most 256 characters"))),
  since: v.optional(v.pipe(v.string("must be a string"), v.isoTimestamp("must be an ISO 8601 timestamp such as 2026-01-31T12:00:00Z"))),
  limit: v.optional(v.pipe(v.number("must be a number"), v.integer("must be an integer"), v.minValue(1, "must be at least 1"), v.maxValue(500, "must be at most 500")), 50),
  before_id: v.optional(v.pipe(v.number("must be a number"), v.integer("must be an integer"), v.minValue(1, "must be at least 1"))),
});
export type ListAuditEventsInput = v.InferOutput<typeof ListAuditEventsInput>;

const AuditEvent = v.object({ id: v.number(), at: v.string(), actor: v.string(), action: v.string(), target: v.string(), outcome: v.string(), detail: v.string() });

/** Newest events first; `next_before_id` continues the listing, null at the end. */
export async function listAuditEvents(ctx: Ctx, input: ListAuditEventsInput) {
  const { auditEvents } = ctx.tables;
  const where: SQL[] = [];
  if (input.action) where.push(eq(auditEvents.action, input.action));
  // target is matched as a substring: "user_id=ann" finds every event about ann.
  if (input.target) where.push(sql`${auditEvents.target} like ${`%${input.target.replace(/[\\%_]/g, "\\$&")}%`} escape '\\'`);
  if (input.since) where.push(gte(auditEvents.at, new Date(input.since).toISOString()));
  if (input.before_id) where.push(lt(auditEvents.id, input.before_id));
  const rows = await ctx.db.select().from(auditEvents).where(and(...where)).orderBy(desc(auditEvents.id)).limit(input.limit + 1);
  const events = rows.slice(0, input.limit);
  return { events, next_before_id: rows.length > input.limit ? events[events.length - 1].id : null };
}

export const auditTools = [
  defineTool({
    name: "list_audit_events",
    title: "List audit events",
    description: "List audit events, newest first. Filters: action (exact), target (substring, e.g. user_id=ann), since (ISO time). Pass next_before_id as before_id for the next page.",
    input: ListAuditEventsInput,
    output: v.object({ events: v.array(AuditEvent), next_before_id: v.nullable(v.number()) }),
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      const page = await listAuditEvents(ctx, input);
      return { text: JSON.stringify(page), data: page };
    },
  }),
];

export const auditRoutes = new Hono<AppEnv>();
