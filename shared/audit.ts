/** The audit trail: who did what to which target and how it ended. Never records a secret. */
import type { Caller } from "./access.ts";
import type { Ctx } from "./context.ts";

export type AuditEntry = { caller: Caller; action: string; target: string; outcome: string; detail?: string };

// Input fields that name what an action is about; anything else (tokens, prompts) is left out.
const TARGET_FIELDS = ["service_name", "role_name", "role", "user_id", "tool_id"] as const;

/** A target description built from the naming fields of an input, e.g. `service_name=weather user_id=ann`. */
export function auditTarget(input: unknown): string {
  if (!input || typeof input !== "object") return "";
  const record = input as Record<string, unknown>;
  return TARGET_FIELDS.filter((f) => record[f] !== undefined && record[f] !== "")
    .map((f) => `${f}=${String(record[f]).slice(0, 200)}`).join(" ");
}

/** Writes an audit event; a failure to write is logged, never thrown (the action already happened). */
export async function recordAudit(ctx: Ctx, entry: AuditEntry): Promise<void> {
  try {
    await ctx.db.insert(ctx.tables.auditEvents).values({
      actor: entry.caller.label,
      action: entry.action,
      target: entry.target,
      outcome: entry.outcome,
      detail: entry.detail ?? "",
    });
  } catch (err) {
    ctx.log.error("Cannot write audit event", { action: entry.action, reason: String((err as Error).message) });
  }
}
