/** The audit trail: who did what to which target and how it ended. Never records a secret. */
import { setImmediate } from "node:timers";
import type { Caller } from "./access.ts";
import { type Ctx, inBackground, perRegistry } from "./context.ts";
import type { Db } from "./db/db.ts";
import { AppError, logReason, recognizeError } from "./errors.ts";

export type AuditEntry = { caller: Caller; action: string; target: string; outcome: string; detail?: string };

// Input fields that name what an action is about; anything else (tokens, prompts) is left out.
const TARGET_FIELDS = ["service_name", "role_name", "role", "user_id", "tool_id"] as const;

/** A target description built from the naming fields of an input, e.g. `service_name=weather user_id=ann`. */
export function auditTarget(input: unknown): string {
  if (!input || typeof input !== "object") return "";
  const record = input as Record<string, unknown>;
  // Names are strings or numbers: anything else (an array nested thousands deep) is never turned into text.
  return TARGET_FIELDS.filter((f) => (typeof record[f] === "string" && record[f] !== "") || typeof record[f] === "number")
    .map((f) => `${f}=${String(record[f]).slice(0, 200)}`).join(" ");
}

type AuditRow = { actor: string; action: string; target: string; outcome: string; detail: string };
type Queued = { row: AuditRow; stored(): void };

function auditRow(entry: AuditEntry): AuditRow {
  return { actor: entry.caller.label, action: entry.action, target: entry.target, outcome: entry.outcome, detail: entry.detail ?? "" };
}

/**
 * The success event of a change, which the change may write in its own transaction (auditedWith):
 * the change and its record then commit together, with one commit (one fsync) instead of two.
 * Whoever made it records it after the change unless `written`.
 */
export type PendingAudit = { entry: AuditEntry; written: boolean };

/** The insert of a pending success event, for the change's own atomic batch; mark it written once that batch committed. */
export function auditedWith(ctx: Ctx, q: Db, pending: PendingAudit) {
  return q.insert(ctx.tables.auditEvents).values(auditRow(pending.entry));
}

type AuditQueue = { waiting: Queued[]; writing: boolean };

// Rows per insert: 5 bound parameters each, far under every engine's limit.
const MAX_BATCH = 500;

/** Writes an audit event, resolving once it is stored; a failure to write is logged, never thrown (the action already happened). */
export function recordAudit(ctx: Ctx, entry: AuditEntry): Promise<void> {
  // Group commit: the events of concurrent requests share one multi-row insert (a burst of token reads
  // costs one write, not one each), and each caller still waits for its own row.
  const queue = perRegistry(ctx, "audit queue", (): AuditQueue => ({ waiting: [], writing: false }));
  const row = auditRow(entry);
  const stored = new Promise<void>((resolve) => queue.waiting.push({ row, stored: resolve }));
  if (!queue.writing) {
    queue.writing = true;
    // In ctx.background, so shutdown waits for queued events before closing the store.
    inBackground(ctx, "Audit write", () => writeQueued(ctx, queue));
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
        await ctx.db.insert(ctx.tables.auditEvents).values(batch.map((q) => q.row));
      } catch (err) {
        // A busy or unreachable database: the callers have their answer; their events are written later.
        if (recognizeError(err) instanceof AppError) retryLater(ctx, batch.map((q) => q.row));
        else logLost(ctx, batch.map((q) => q.row), err);
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
        await ctx.db.insert(ctx.tables.auditEvents).values(rows);
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
