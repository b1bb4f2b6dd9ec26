/**
 * Tool pinning: a tool whose definition changes downstream is held (kept with its id and attachments, but
 * withheld from agents and the gateway) until an admin approves the change. What a refresh does with each
 * changed tool (planChanges, changeStatements), and the admin's tools: list_tool_changes,
 * approve_tool_change, reject_tool_change. REGISTRY_TOOL_CHANGES=accept serves changes at once, still recorded.
 */
import { and, asc, desc, eq, inArray, isNull, type SQL, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import * as v from "valibot";
import type { Ctx } from "../../shared/context.ts";
import type { Db } from "../../shared/db/db.ts";
import { AppError } from "../../shared/errors.ts";
import type { Feature } from "../../shared/feature.ts";
import { defineTool } from "../../shared/mcp.ts";
import { ServiceName, ToolId } from "../../shared/names.ts";
import { notifyCatalogueChanged } from "../services/hook.ts";
import { changedFields, type Definition, definitionColumns, definitionOf, digestOf, FLAG_MEANINGS, type Flag, flagsOf } from "./definition.ts";

/** A stored tool as a refresh compares it: its approved definition, digest, whether it is held, and the digest of its open change. */
export type PinnedTool = Definition & { digest: string | null; held: boolean; openDigest: string | null };

/** What a refresh does with one tool that is listed again: hold a change, accept it (policy accept), or release a held tool whose service went back. */
export type ToolPlan = { kind: "hold" | "accept"; name: string; before: Definition; after: Definition; digest: string; flags: Flag[] } | { kind: "release"; name: string };

type Status = "pending" | "rejected" | "approved" | "accepted";
// An undecided change (pending or rejected: it holds its tool; accepted and not yet acknowledged) is replaced by a newer one.
const UNDECIDED = ["pending", "rejected", "accepted"] as const;

// Names a description should not name: the registry's own tools are added by the caller.
const REGISTRY_WORDS = ["authorize_user_to_service", "revoke_user_token", "list_services", "get_tools", "add_service", "remove_service", "create_user_key"];

/**
 * The plans for the tools a discovery lists again: unchanged (approved digest) and not held: nothing; back
 * to the approved definition while held: release; otherwise a change, held under policy hold unless it is
 * the open change already (a rejected one stays rejected), accepted under policy accept.
 */
export function planChanges(ctx: Ctx, stored: PinnedTool[], found: Definition[]): ToolPlan[] {
  const byName = new Map(stored.map((t) => [t.name, t]));
  const names = [...REGISTRY_WORDS, ...stored.map((t) => t.name)];
  const plans: ToolPlan[] = [];
  for (const after of found) {
    const before = byName.get(after.name);
    if (!before) continue;
    const digest = digestOf(after);
    const approved = before.digest ?? digestOf(before);
    if (digest === approved) {
      if (before.held) plans.push({ kind: "release", name: after.name });
      continue;
    }
    const hold = ctx.config.toolChanges === "hold";
    if (hold && before.openDigest === digest) continue;
    plans.push({ kind: hold ? "hold" : "accept", name: after.name, before: definitionOf(before), after: definitionOf(after), digest, flags: flagsOf(before, after, names) });
  }
  return plans;
}

/**
 * The statements of the plans for one service, for the refresh's atomic unit: `ours` is true only while the
 * unit's own catalogue version stands, so nothing is written over a catalogue another writer changed (the
 * insert of a change then fails the unit, as the insert of a new tool does).
 */
export function changeStatements(q: Db, ctx: Ctx, serviceId: number, plans: ToolPlan[], ours: SQL): BatchItem<"sqlite">[] {
  const { tools, toolChanges } = ctx.tables;
  const tool = (name: string) => and(eq(tools.serviceId, serviceId), eq(tools.name, name), ours);
  const toolId = (name: string) => sql`(select ${tools.id} from ${tools} where ${tool(name)})`;
  // A tool's undecided change is replaced by a newer one, or dropped when the service went back: a service
  // changing a tool at every refresh leaves one row, not one per refresh (decisions are in the audit trail).
  const close = (name: string) => q.delete(toolChanges).where(and(eq(toolChanges.toolId, toolId(name)), inArray(toolChanges.status, [...UNDECIDED])));
  return plans.flatMap((p): BatchItem<"sqlite">[] => {
    if (p.kind === "release") return [q.update(tools).set({ held: false }).where(tool(p.name)), close(p.name)];
    const { name: _, ...fields } = p.after;
    const change = q.insert(toolChanges).values({
      toolId: toolId(p.name),
      status: p.kind === "hold" ? "pending" : "accepted",
      before: p.before,
      after: p.after,
      digest: p.digest,
      flags: p.flags,
    });
    const onTool = p.kind === "hold" ? { held: true } : { ...fields, digest: p.digest, held: false };
    return [q.update(tools).set(onTool).where(tool(p.name)), close(p.name), change];
  });
}

/** Names of the tools of a list of plans, by kind. */
export function namesOf(plans: ToolPlan[], kind: ToolPlan["kind"]): string[] {
  return plans.filter((p) => p.kind === kind).map((p) => p.name);
}

const ListInput = v.object({ service_name: v.optional(ServiceName) });
const ToolIdInput = v.object({ tool_id: ToolId });

type ChangeRow = {
  tool_id: number;
  service_name: string;
  tool_name: string;
  status: string;
  seen_at: string;
  changes: { field: string; before: unknown; after: unknown }[];
  flags: string[];
};

/** The open changes (held tools: pending, rejected) and the accepted ones not yet acknowledged, newest first. */
async function listToolChanges(ctx: Ctx, input: v.InferOutput<typeof ListInput>): Promise<ChangeRow[]> {
  const { toolChanges, tools, services } = ctx.tables;
  const rows = await ctx.db
    .select({
      tool_id: tools.id,
      service_name: services.name,
      tool_name: tools.name,
      status: toolChanges.status,
      seen_at: toolChanges.seenAt,
      before: toolChanges.before,
      after: toolChanges.after,
      flags: toolChanges.flags,
    })
    .from(toolChanges)
    .innerJoin(tools, eq(tools.id, toolChanges.toolId))
    .innerJoin(services, eq(services.id, tools.serviceId))
    .where(and(inArray(toolChanges.status, ["pending", "rejected", "accepted"]), input.service_name === undefined ? undefined : eq(services.name, input.service_name)))
    .orderBy(desc(toolChanges.id));
  return rows.map(({ before, after, flags, ...r }) => ({ ...r, changes: changedFields(before as Definition, after as Definition), flags: flags as string[] }));
}

// The change an admin decides on: the tool's open change, or its latest accepted one; not_found otherwise.
async function decidable(ctx: Ctx, toolId: number, action: string, statuses: readonly Status[]) {
  const { toolChanges, tools } = ctx.tables;
  const [row] = await ctx.db
    .select({ id: toolChanges.id, status: toolChanges.status, after: toolChanges.after, digest: toolChanges.digest, tool: tools.name })
    .from(tools)
    .leftJoin(toolChanges, and(eq(toolChanges.toolId, tools.id), inArray(toolChanges.status, [...statuses])))
    .where(eq(tools.id, toolId))
    .orderBy(desc(toolChanges.id))
    .limit(1);
  if (!row) throw new AppError("not_found", `Cannot ${action}: no such tool`);
  if (row.id === null) throw new AppError("not_found", `Cannot ${action}: the tool has no change waiting for review`);
  return row as { id: number; status: Status; after: Definition; digest: string; tool: string };
}

/** Approves a tool's change: the new definition becomes the approved one and is served at once; an accepted change is acknowledged. */
async function approveToolChange(ctx: Ctx, toolId: number, decidedBy: string): Promise<{ name: string; served: boolean }> {
  const { toolChanges, tools } = ctx.tables;
  const action = `approve the change of tool ${toolId}`;
  const change = await decidable(ctx, toolId, action, ["pending", "rejected", "accepted"]);
  const { name: _, ...fields } = change.after;
  const decided = { status: "approved" as const, decidedAt: new Date().toISOString(), decidedBy };
  const open = change.status !== "accepted";
  const [marked] = (await ctx.atomic((q) => [
    q
      .update(toolChanges)
      .set(decided)
      .where(and(eq(toolChanges.id, change.id), eq(toolChanges.status, change.status), isNull(toolChanges.decidedAt)))
      .returning({ id: toolChanges.id }),
    // Only if this request marked it (a refresh may have superseded the change meanwhile).
    ...(open
      ? [
          q
            .update(tools)
            .set({ ...fields, digest: change.digest, held: false })
            .where(and(eq(tools.id, toolId), sql`exists (select 1 from ${toolChanges} where ${toolChanges.id} = ${change.id} and ${toolChanges.status} = 'approved')`)),
        ]
      : []),
  ])) as [unknown[]];
  if (marked.length === 0) throw new AppError("conflict", `Cannot ${action}: the change was decided or superseded meanwhile; list the changes again`);
  if (open) notifyCatalogueChanged(ctx);
  return { name: change.tool, served: open };
}

/** Rejects a pending change: the tool stays held; a refresh that finds the same definition again does not raise it anew. */
async function rejectToolChange(ctx: Ctx, toolId: number, decidedBy: string): Promise<string> {
  const { toolChanges } = ctx.tables;
  const action = `reject the change of tool ${toolId}`;
  const change = await decidable(ctx, toolId, action, ["pending"]);
  const marked = await ctx.db
    .update(toolChanges)
    .set({ status: "rejected", decidedBy })
    .where(and(eq(toolChanges.id, change.id), eq(toolChanges.status, "pending")))
    .returning({ id: toolChanges.id });
  if (marked.length === 0) throw new AppError("conflict", `Cannot ${action}: the change was decided or superseded meanwhile; list the changes again`);
  return change.tool;
}

/** Start-up: tools stored before pinning existed get the digest of their definition (it is the approved one). */
async function fillDigests(ctx: Ctx): Promise<void> {
  const { tools } = ctx.tables;
  const rows = await ctx.db
    .select({ id: tools.id, ...definitionColumns(tools) })
    .from(tools)
    .where(isNull(tools.digest))
    .orderBy(asc(tools.id));
  // 500 rows per transaction: one commit per batch, not one per tool.
  for (let i = 0; i < rows.length; i += 500) {
    const [first, ...rest] = rows.slice(i, i + 500).map(
      (r) => (q: Db) =>
        q
          .update(tools)
          .set({ digest: digestOf(r) })
          .where(and(eq(tools.id, r.id), isNull(tools.digest))),
    );
    await ctx.atomic((q) => [first(q), ...rest.map((update) => update(q))]);
  }
}

const Change = v.object({
  tool_id: v.number(),
  service_name: v.string(),
  tool_name: v.string(),
  status: v.string(),
  seen_at: v.string(),
  changes: v.array(v.object({ field: v.string(), before: v.unknown(), after: v.unknown() })),
  flags: v.array(v.string()),
});

const tools = [
  defineTool({
    name: "list_tool_changes",
    title: "List changed tool definitions",
    description:
      "List tools whose definition changed downstream: held ones (status pending, or rejected) and, under REGISTRY_TOOL_CHANGES=accept, accepted ones not yet acknowledged. " +
      `Each with the before and after of every changed field, when it was seen, and flags for the reviewer (${Object.keys(FLAG_MEANINGS).join(", ")}).`,
    input: ListInput,
    output: v.object({ changes: v.array(Change) }),
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      const changes = await listToolChanges(ctx, input);
      return { text: JSON.stringify(changes), data: { changes } };
    },
  }),
  defineTool({
    name: "approve_tool_change",
    title: "Approve a tool's changed definition",
    description: "Approve the change of a held tool: its new definition becomes the approved one and agents see it at once (an accepted change is acknowledged).",
    input: ToolIdInput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    async run(ctx, input, audit) {
      const { name, served } = await approveToolChange(ctx, input.tool_id, audit.entry.caller.label);
      return { text: served ? `Change of tool ${input.tool_id} ("${name}") approved: it is served again.` : `Change of tool ${input.tool_id} ("${name}") acknowledged.` };
    },
  }),
  defineTool({
    name: "reject_tool_change",
    title: "Reject a tool's changed definition",
    description: "Reject the change of a held tool: it stays held (not served); a refresh finding the same definition again does not raise it anew.",
    input: ToolIdInput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    async run(ctx, input, audit) {
      const name = await rejectToolChange(ctx, input.tool_id, audit.entry.caller.label);
      return {
        text: `Change of tool ${input.tool_id} ("${name}") rejected: the tool stays held until its service lists the approved definition again or a new change is approved.`,
      };
    },
  }),
];

/** Tool pinning: the admin's review tools, and the digests of tools stored before it. */
export const toolPinning: Feature = { name: "tool_pinning", tools, prepare: fillDigests };
