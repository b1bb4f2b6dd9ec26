/** Audit: the admin's view of the audit trail (changes and token reads), filtered and paginated. */
import { and, desc, eq, gte, lt, type SQL, sql } from "drizzle-orm";
import { Hono } from "hono";
import * as v from "valibot";
import { type Ctx, inBackground } from "../../shared/context.ts";
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

/** How often the retention runs (and once a second after start). */
const RETENTION_EVERY_MS = 60 * 60 * 1000;
// Rows deleted per statement: each delete is a short write, so other writers wait little.
const RETENTION_BATCH = 5000;

/** Deletes audit events older than REGISTRY_AUDIT_RETENTION_DAYS now; returns how many went. */
export async function applyAuditRetention(ctx: Ctx): Promise<number> {
  const days = ctx.config.auditRetentionDays;
  if (days === 0) return 0;
  const { auditEvents } = ctx.tables;
  const cutoff = new Date(Date.now() - days * 86_400_000).toISOString();
  let deleted = 0;
  for (;;) {
    const batch = ctx.db.select({ id: auditEvents.id }).from(auditEvents).where(lt(auditEvents.at, cutoff)).limit(RETENTION_BATCH);
    const gone = await ctx.db.delete(auditEvents).where(sql`${auditEvents.id} in (${batch})`).returning({ id: auditEvents.id });
    deleted += gone.length;
    if (gone.length < RETENTION_BATCH) break;
  }
  if (deleted > 0) ctx.log.info(`Audit retention: deleted ${deleted} event${deleted === 1 ? "" : "s"} older than ${days} days`);
  return deleted;
}

/** Applies the audit retention in the background: `firstInMs` after start, then every hour; stop() ends it. */
export function startAuditRetention(ctx: Ctx, firstInMs = 1000): { stop(): void } {
  if (ctx.config.auditRetentionDays === 0) return { stop() {} };
  let timer = setTimeout(function run() {
    inBackground(ctx, "Audit retention", () => applyAuditRetention(ctx));
    timer = setTimeout(run, RETENTION_EVERY_MS);
  }, firstInMs);
  return { stop: () => clearTimeout(timer) };
}
