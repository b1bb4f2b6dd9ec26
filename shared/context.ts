/** What every feature receives: built once by the registry and passed along as a value. */
import type { Config } from "./config.ts";
import type { Vault } from "./crypto.ts";
import type { SQL, SQLWrapper } from "drizzle-orm";
import type { SelectedFields } from "drizzle-orm/sqlite-core";
import { type Db, type Engine, jsonArrayOf, type Store, type Tables } from "./db/db.ts";
import { logReason } from "./errors.ts";
import type { KeptAnswers } from "./db/answers.ts";
import type { Log } from "./log.ts";

/** Who may be calling: see features/access for how a caller is recognised and what each may call. */
export type Principal = "anonymous" | "user" | "agent" | "admin";
/**
 * The caller of a request: its principal and a label safe to log (never the key). `userId`: the user a
 * user key belongs to, or the user an agent acts for on the gateway (X-Registry-User).
 */
export type Caller = { principal: Principal; label: string; userId?: string };

/** One audit event as actions report it (features/audit writes it). */
export type AuditEntry = { caller: Caller; action: string; target: string; outcome: string; detail?: string };

/**
 * The success event of a change, which the change may write in its own transaction (features/audit's
 * auditedWith): the change and its record then commit together, with one commit (one fsync) instead of
 * two. Whoever made it records it after the change unless `written`.
 */
export type PendingAudit = { entry: AuditEntry; written: boolean };

/** An audit row waiting for the next group commit, and how to tell its caller it is stored. */
export type QueuedAudit = { row: { actor: string; action: string; target: string; outcome: string; detail: string }; stored(): void };

export type Ctx = {
  db: Db;
  /** The tables of the engine in use: take tables from here, never import them. */
  tables: Tables;
  engine: Engine;
  /** Statements all-or-nothing (see Store.atomic). */
  atomic: Store["atomic"];
  /** A raw SQL statement for atomic() (see Store.statement). */
  statement: Store["statement"];
  /** One raw SQL statement (see Store.execute). */
  execute: Store["execute"];
  /** Resolves when the database answers within the deadline (see Store.ready); /ready asks it. */
  ready(deadlineMs: number): Promise<void>;
  config: Config;
  /** The registry's address for links it hands out: REGISTRY_PUBLIC_URL, else its listening URL (set once it listens). */
  publicUrl: string;
  log: Log;
  /** Encrypts and decrypts user tokens (key loaded once at start-up). */
  vault: Vault;
  /** Work that outlives a request (hooks); awaited on shutdown. */
  background: Set<Promise<unknown>>;
  /** Statements prepared once per registry, by name (prepareOnce). */
  prepared: Map<string, unknown>;
  /** Answers kept per catalogue generation (shared/db/answers.ts). */
  answers: KeptAnswers;
  /** Audit events of this turn of the event loop, written together (features/audit). */
  auditQueue: { waiting: QueuedAudit[]; writing: boolean; drained?: Promise<void> };
};

/** The per-registry state of a new context: nothing prepared, kept or queued yet. */
export function freshState(): Pick<Ctx, "background" | "prepared" | "answers" | "auditQueue"> {
  return { background: new Set(), prepared: new Map(), answers: { answers: new Map(), size: 0 }, auditQueue: { waiting: [], writing: false } };
}

/** A query prepared once per registry; `name` also names the statement (PostgreSQL's drizzle wants one). */
export function prepareOnce<P>(ctx: Ctx, name: string, build: () => { prepare(): P }): P {
  let prepared = ctx.prepared.get(name) as P | undefined;
  if (prepared === undefined) {
    const query = build();
    prepared = (query.prepare as (name: string) => P).call(query, name);
    ctx.prepared.set(name, prepared);
  }
  return prepared;
}

/** The first row of a prepared query: SQLite reads just that one (get), PostgreSQL takes the first row. */
export async function firstRow<R>(query: { execute(values: Record<string, unknown>): Promise<R[]> }, values: Record<string, unknown>): Promise<R | undefined> {
  // Only SQLite's prepared queries have get; it skips the row iterator, which costs more than the lookup.
  const get = (query as { get?(values: Record<string, unknown>): Promise<R | undefined> }).get;
  return get ? get.call(query, values) : (await query.execute(values))[0];
}

// A select built over the fields it is given (from, joins, where), not yet ordered or prepared.
type Select = { orderBy(...by: SQL[]): { prepare(): unknown }; prepare(): unknown };
type Prepared = { execute(values: Record<string, unknown>): Promise<Record<string, unknown>[]> };

/**
 * The rows of a query as the JSON text of an array of objects with `fields`, in `orderBy` order, from a
 * statement prepared once per registry; `select` builds the query over the fields it is given. SQLite
 * builds the text itself (in-process: no value becomes a JavaScript value and back, 2x faster for 200
 * rows); PostgreSQL, which several instances share, only runs the query and the rows are serialized here
 * (building the JSON there cost it 2.6 times the query).
 */
export async function jsonRows(
  ctx: Ctx,
  name: string,
  fields: SelectedFields,
  orderBy: SQL,
  select: (fields: SelectedFields) => Select,
  values: Record<string, unknown>,
): Promise<string> {
  if (ctx.engine === "sqlite") {
    const row = await firstRow(
      prepareOnce(ctx, name, () => select({ json: jsonArrayOf(ctx.engine, fields as Record<string, SQLWrapper>, orderBy) }) as { prepare(): Prepared }),
      values,
    );
    return (row?.json as string | undefined) ?? "[]";
  }
  const rows = await prepareOnce(ctx, name, () => select(fields).orderBy(orderBy) as { prepare(): Prepared }).execute(values);
  return JSON.stringify(rows);
}

/** Runs `work` in the background, logging (never throwing) its failure and remembering it until it ends. */
export function inBackground(ctx: Ctx, what: string, work: () => Promise<unknown>): void {
  const p: Promise<unknown> = work()
    .catch((err) => ctx.log.error(`${what} failed`, { reason: logReason(err) }))
    .finally(() => ctx.background.delete(p));
  ctx.background.add(p);
}
