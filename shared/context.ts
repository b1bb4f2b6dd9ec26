/** What every feature receives: built once by the registry and passed along as a value. */
import type { Config } from "./config.ts";
import type { Vault } from "./crypto.ts";
import type { SQL, SQLWrapper } from "drizzle-orm";
import type { SelectedFields } from "drizzle-orm/sqlite-core";
import { type Db, type Engine, jsonArrayOf, type Tables } from "./db/db.ts";
import { logReason } from "./errors.ts";
import type { Log } from "./log.ts";

export type Ctx = {
  db: Db;
  /** The tables of the engine in use: take tables from here, never import them. */
  tables: Tables;
  engine: Engine;
  /** Resolves when the database answers within the deadline (see Store.ready); /ready asks it. */
  ready(deadlineMs: number): Promise<void>;
  config: Config;
  log: Log;
  /** Encrypts and decrypts user tokens (key loaded once at start-up). */
  vault: Vault;
  /** Work that outlives a request (hooks); awaited on shutdown. */
  background: Set<Promise<unknown>>;
  /** Per-registry values built on first use (prepared statements, the audit queue): see perRegistry. */
  once?: Map<string, unknown>;
};

/** This registry's value named `name`, built by `build` on first use (e.g. a statement prepared once). */
export function perRegistry<T>(ctx: Ctx, name: string, build: () => T): T {
  const values = (ctx.once ??= new Map<string, unknown>());
  if (!values.has(name)) values.set(name, build());
  return values.get(name) as T;
}

/** A query prepared once per registry; `name` also names the statement (PostgreSQL's drizzle wants one). */
export function prepareOnce<P>(ctx: Ctx, name: string, build: () => { prepare(): P }): P {
  return perRegistry(ctx, `prepared ${name}`, () => {
    const query = build();
    return (query.prepare as (name: string) => P).call(query, name);
  });
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
export async function jsonRows(ctx: Ctx, name: string, fields: SelectedFields, orderBy: SQL, select: (fields: SelectedFields) => Select, values: Record<string, unknown>): Promise<string> {
  if (ctx.engine === "sqlite") {
    const row = await firstRow(prepareOnce(ctx, name, () => select({ json: jsonArrayOf(ctx.engine, fields as Record<string, SQLWrapper>, orderBy) }) as { prepare(): Prepared }), values);
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
