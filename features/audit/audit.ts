/**
 * The audit trail: who did what to which target and how it ended (never a secret). Writing (group commit,
 * the audited-call wrapper), reading (list_audit_events) and retention.
 */
import { setImmediate } from "node:timers";
import { type AuditEntry, type Caller, type Ctx, inBackground, type PendingAudit, prepareOnce, type QueuedAudit } from "../../shared/context.ts";
import type { Db } from "../../shared/db/db.ts";
import { AppError, logReason, recognizeError } from "../../shared/errors.ts";

import { and, desc, eq, gte, lt, type Placeholder, type SQL, sql } from "drizzle-orm";
import * as v from "valibot";
import type { Feature } from "../../shared/feature.ts";
import { defineTool } from "../../shared/mcp.ts";

// Input fields that name what an action is about; anything else (tokens, prompts) is left out.
const TARGET_FIELDS = ["service_name", "role_name", "role", "user_id", "tool_id", "tool"] as const;

/** A target description built from the naming fields of an input, e.g. `service_name=weather user_id=ann`. */
export function auditTarget(input: unknown): string {
  if (!input || typeof input !== "object") return "";
  const record = input as Record<string, unknown>;
  // Names are strings or numbers: anything else (an array nested thousands deep) is never turned into text.
  return TARGET_FIELDS.filter((f) => (typeof record[f] === "string" && record[f] !== "") || typeof record[f] === "number")
    .map((f) => `${f}=${String(record[f]).slice(0, 200)}`)
    .join(" ");
}

type AuditRow = QueuedAudit["row"];

function auditRow(entry: AuditEntry): AuditRow {
  return { actor: entry.caller.label, action: entry.action, target: entry.target, outcome: entry.outcome, detail: entry.detail ?? "" };
}

/** The insert of a pending success event, for the change's own atomic batch; mark it written once that batch committed. */
export function auditedWith(ctx: Ctx, q: Db, pending: PendingAudit) {
  return q.insert(ctx.tables.auditEvents).values(auditRow(pending.entry));
}

type AuditQueue = Ctx["auditQueue"];

// Rows per insert. Each size is a statement prepared once (building a many-row INSERT cost more than
// SQLite's insert and commit), so sizes are bounded: a larger queue is written in several inserts.
const MAX_BATCH = 64;
const COLUMNS = ["actor", "action", "target", "outcome", "detail"] as const;

// The multi-row insert of `n` events, prepared once per size; its values are named actor0 .. detail<n-1>.
function insertEvents(ctx: Ctx, rows: AuditRow[]): Promise<unknown> {
  const n = rows.length;
  const insert = prepareOnce(ctx, `audit_insert_${n}`, () => {
    const named = (i: number) => Object.fromEntries(COLUMNS.map((c) => [c, sql.placeholder(`${c}${i}`)])) as Record<(typeof COLUMNS)[number], Placeholder<string>>;
    return ctx.db.insert(ctx.tables.auditEvents).values(Array.from({ length: n }, (_, i) => named(i)));
  });
  const values: Record<string, string> = {};
  rows.forEach((row, i) => {
    for (const c of COLUMNS) values[`${c}${i}`] = row[c];
  });
  return insert.execute(values);
}

/** Writes an audit event, resolving once it is stored; a failure to write is logged, never thrown (the action already happened). */
export function recordAudit(ctx: Ctx, entry: AuditEntry): Promise<void> {
  // Group commit: the events of concurrent requests share one multi-row insert (a burst of token reads
  // costs one write, not one each), and each caller still waits for its own row.
  const queue = ctx.auditQueue;
  const row = auditRow(entry);
  const stored = new Promise<void>((resolve) => queue.waiting.push({ row, stored: resolve }));
  if (!queue.writing) {
    queue.writing = true;
    // In ctx.background, so shutdown waits for queued events before closing the store; `drained` for readers.
    queue.drained = new Promise((resolve) => inBackground(ctx, "Audit write", () => writeQueued(ctx, queue).finally(resolve)));
  }
  return stored;
}

async function writeQueued(ctx: Ctx, queue: AuditQueue): Promise<void> {
  try {
    // One turn of the event loop: the events of the requests handled in this turn join the batch.
    await new Promise((resolve) => setImmediate(resolve));
    while (queue.waiting.length > 0) {
      const batch = queue.waiting.splice(0, MAX_BATCH);
      try {
        await insertEvents(
          ctx,
          batch.map((q) => q.row),
        );
      } catch (err) {
        // A busy or unreachable database: the callers have their answer; their events are written later.
        if (recognizeError(err) instanceof AppError)
          retryLater(
            ctx,
            batch.map((q) => q.row),
          );
        else
          logLost(
            ctx,
            batch.map((q) => q.row),
            err,
          );
      }
      for (const q of batch) q.stored();
    }
  } finally {
    queue.writing = false;
  }
}

const RETRY_DELAYS_MS = [1000, 2000, 5000, 10_000, 30_000];

// Writes events the database refused for being busy or unreachable, after growing pauses; logs them as lost at the end.
function retryLater(ctx: Ctx, rows: AuditRow[]): void {
  inBackground(ctx, "Audit write", async () => {
    let last: unknown;
    for (const delay of RETRY_DELAYS_MS) {
      await new Promise((resolve) => setTimeout(resolve, delay));
      try {
        await insertEvents(ctx, rows);
        return;
      } catch (err) {
        last = err;
      }
    }
    logLost(ctx, rows, last);
  });
}

function logLost(ctx: Ctx, rows: AuditRow[], err: unknown): void {
  const actions = [...new Set(rows.map((r) => r.action))];
  ctx.log.error(`Cannot write audit event${rows.length === 1 ? "" : `s (${rows.length})`}`, { action: actions.join(","), reason: logReason(err) });
}

const Time = v.pipe(v.string("must be a string"), v.isoTimestamp("must be an ISO 8601 timestamp such as 2026-01-31T12:00:00Z"));
const ListAuditEventsInput = v.object({
  actor: v.optional(v.pipe(v.string("must be a string"), v.trim(), v.maxLength(256, "must be at most 256 characters"))),
  action: v.optional(v.pipe(v.string("must be a string"), v.trim(), v.maxLength(64, "must be at most 64 characters"))),
  target: v.optional(v.pipe(v.string("must be a string"), v.trim(), v.maxLength(256, "must be at most 256 characters"))),
  since: v.optional(Time),
  until: v.optional(Time),
  limit: v.optional(v.pipe(v.number("must be a number"), v.integer("must be an integer"), v.minValue(1, "must be at least 1"), v.maxValue(500, "must be at most 500")), 50),
  before_id: v.optional(v.pipe(v.number("must be a number"), v.integer("must be an integer"), v.minValue(1, "must be at least 1"))),
});
type ListAuditEventsInput = v.InferOutput<typeof ListAuditEventsInput>;

const AuditEvent = v.object({ id: v.number(), at: v.string(), actor: v.string(), action: v.string(), target: v.string(), outcome: v.string(), detail: v.string() });

/** Newest events first; `next_before_id` continues the listing, null at the end. */
async function listAuditEvents(ctx: Ctx, input: ListAuditEventsInput) {
  const { auditEvents } = ctx.tables;
  // Events this instance recorded before the call are in the answer, also those still being written.
  if (ctx.auditQueue.writing) await ctx.auditQueue.drained;
  const where: SQL[] = [];
  // actor is matched as a prefix: "admin:1a2b3c4d" finds the key's events, from the console too.
  if (input.actor) where.push(sql`${auditEvents.actor} like ${`${escapeLike(input.actor)}%`} escape '\\'`);
  if (input.action) where.push(eq(auditEvents.action, input.action));
  // target is matched as a substring: "user_id=ann" finds every event about ann.
  if (input.target) where.push(sql`${auditEvents.target} like ${`%${escapeLike(input.target)}%`} escape '\\'`);
  if (input.since) where.push(gte(auditEvents.at, new Date(input.since).toISOString()));
  if (input.until) where.push(lt(auditEvents.at, new Date(input.until).toISOString()));
  if (input.before_id) where.push(lt(auditEvents.id, input.before_id));
  const rows = await ctx.db
    .select()
    .from(auditEvents)
    .where(and(...where))
    .orderBy(desc(auditEvents.id))
    .limit(input.limit + 1);
  const events = rows.slice(0, input.limit);
  return { events, next_before_id: rows.length > input.limit ? events[events.length - 1].id : null };
}

const escapeLike = (s: string) => s.replace(/[\\%_]/g, "\\$&");

/** Gateway calls and the refused or failed ones, per hour of the last `hours` (oldest first, empty hours included). */
export async function gatewayActivity(ctx: Ctx, hours: number): Promise<{ hour: string; calls: number; errors: number }[]> {
  const { auditEvents } = ctx.tables;
  const start = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - (hours - 1) * 3_600_000);
  const hour = sql<string>`substr(${auditEvents.at}, 1, 13)`;
  const rows = await ctx.db
    .select({ hour, calls: sql<number>`count(*)`, errors: sql<number>`sum(case when ${auditEvents.outcome} = 'ok' then 0 else 1 end)` })
    .from(auditEvents)
    .where(and(eq(auditEvents.action, "gateway_call"), gte(auditEvents.at, start.toISOString())))
    .groupBy(hour);
  const byHour = new Map(rows.map((r) => [r.hour, r]));
  return Array.from({ length: hours }, (_, i) => {
    const h = new Date(start.getTime() + i * 3_600_000).toISOString().slice(0, 13);
    const r = byHour.get(h);
    return { hour: h, calls: Number(r?.calls ?? 0), errors: Number(r?.errors ?? 0) };
  });
}

const tools = [
  defineTool({
    name: "list_audit_events",
    title: "List audit events",
    description:
      "List audit events, newest first. Filters: actor (prefix, e.g. admin:1a2b3c4d), action (exact), target (substring, e.g. user_id=ann), " +
      "since and until (ISO times; since included, until not). Pass next_before_id as before_id for the next page.",
    input: ListAuditEventsInput,
    output: v.object({ events: v.array(AuditEvent), next_before_id: v.nullable(v.number()) }),
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      const page = await listAuditEvents(ctx, input);
      return { text: JSON.stringify(page), data: page };
    },
  }),
];

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
function startAuditRetention(ctx: Ctx, firstInMs = 1000): { stop(): void } {
  if (ctx.config.auditRetentionDays === 0) return { stop() {} };
  let timer = setTimeout(function run() {
    inBackground(ctx, "Audit retention", () => applyAuditRetention(ctx));
    timer = setTimeout(run, RETENTION_EVERY_MS);
  }, firstInMs);
  return { stop: () => clearTimeout(timer) };
}

/**
 * Runs `work` as one audited action: its success is recorded (unless the change wrote the event in its own
 * transaction: PendingAudit.written), or its failure with the error's code (and, with failureDetail, its
 * message), then the result is returned or the error thrown on. `work` may refine the pending entry's
 * target once it has validated its input. The one wrapper for MCP tools and HTTP routes alike.
 */
export async function audited<T>(
  ctx: Ctx,
  entry: { caller: Caller; action: string; target: string },
  work: (pending: PendingAudit) => Promise<T>,
  opts: { failureDetail?: boolean } = {},
): Promise<T> {
  const pending: PendingAudit = { entry: { ...entry, outcome: "ok" }, written: false };
  let result: T;
  try {
    result = await work(pending);
  } catch (err) {
    const known = recognizeError(err);
    const appError = known instanceof AppError ? known : null;
    await recordAudit(ctx, { ...pending.entry, outcome: appError?.code ?? "internal", detail: opts.failureDetail ? appError?.message : undefined });
    throw err;
  }
  if (!pending.written) await recordAudit(ctx, pending.entry);
  return result;
}

/** The audit trail's tool and its retention. */
export const audit: Feature = { name: "audit", tools, start: (ctx) => startAuditRetention(ctx) };
