/** Opening the database (SQLite/libSQL or PostgreSQL), migrations, and the few engine-specific helpers. */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";
import { type SQL, sql } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import { drizzle, type LibSQLDatabase } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";
import * as pgSchema from "./schema.pg.ts";
import * as schema from "./schema.ts";

export type Tables = typeof schema;
/**
 * The query interface features use. It is typed with the SQLite dialect; on PostgreSQL the same builder
 * calls run on a postgres-js drizzle instance with the tables of schema.pg.ts (same names, same columns).
 * Features only use the builder subset both engines share, and take tables from the store, never import them.
 */
export type Db = LibSQLDatabase<Tables>;
export type Engine = "sqlite" | "postgres";
export type Store = { db: Db; tables: Tables; engine: Engine; close(): Promise<void> };

const MIGRATIONS = resolve(dirname(fileURLToPath(import.meta.url)), "../../drizzle");

/** True for a postgres:// or postgresql:// URL. */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

/** Opens the database at `url`, applies pending migrations, and returns the store. */
export async function openStore(url: string): Promise<Store> {
  return isPostgresUrl(url) ? openPostgres(url) : openSqlite(url);
}

async function openSqlite(url: string): Promise<Store> {
  const client = createClient({ url });
  if (url.startsWith("file:")) await client.execute("PRAGMA journal_mode=WAL");
  // libSQL turns foreign keys on for every connection it opens; make sure of it on this one.
  await client.execute("PRAGMA foreign_keys=ON");
  const db = drizzle(client, { schema });
  await migrate(db, { migrationsFolder: `${MIGRATIONS}/sqlite` });
  return { db, tables: schema, engine: "sqlite", close: async () => client.close() };
}

async function openPostgres(url: string): Promise<Store> {
  const { default: postgres } = await import("postgres");
  const { drizzle: drizzlePg } = await import("drizzle-orm/postgres-js");
  const { migrate: migratePg } = await import("drizzle-orm/postgres-js/migrator");
  // Several instances may start at once: migrate on one connection holding an advisory lock.
  const one = postgres(url, { max: 1, onnotice: () => {} });
  try {
    await one`select pg_advisory_lock(4711001)`;
    await migratePg(drizzlePg(one), { migrationsFolder: `${MIGRATIONS}/pg` });
  } finally {
    await one.end();
  }
  const client = postgres(url, { max: 10, onnotice: () => {} });
  const db = drizzlePg(client, { schema: pgSchema }) as unknown as Db;
  return { db, tables: pgSchema as unknown as Tables, engine: "postgres", close: () => client.end({ timeout: 5 }) };
}

type Atomic = [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]];

/**
 * Runs the statements built by `build` all-or-nothing. On SQLite this is one batch: it runs on one
 * connection without yielding, so concurrent requests never interleave inside it. On PostgreSQL it is a
 * transaction, and `build` receives the transaction to build on. Returns each statement's result.
 */
export async function atomic(db: Db, build: (q: Db) => Atomic): Promise<unknown[]> {
  // Only libSQL's drizzle has batch; postgres-js runs the same statements in a transaction.
  // Either way the result of each statement comes back in order (rows for a statement with .returning()).
  if ("batch" in db) return db.batch(build(db));
  return (db as unknown as { transaction(fn: (tx: Db) => Promise<unknown[]>): Promise<unknown[]> }).transaction(async (tx) => {
    const results: unknown[] = [];
    for (const statement of build(tx)) results.push(await statement);
    return results;
  });
}

/**
 * After rows were inserted with explicit ids (an import), makes sure new rows get larger ids. SQLite's
 * AUTOINCREMENT already follows explicit ids; a PostgreSQL identity sequence has to be moved.
 */
export async function syncIdSequence(store: { db: Db; engine: Engine }, table: "tools" | "services" | "roles" | "users"): Promise<void> {
  if (store.engine !== "postgres") return;
  await (store.db as unknown as { execute(q: SQL): Promise<unknown> }).execute(
    sql`select setval(pg_get_serial_sequence(${table}, 'id'), coalesce((select max(id) from ${sql.identifier(table)}), 0) + 1, false)`,
  );
}

/** True when an error (or its cause) is a violation of a UNIQUE or PRIMARY KEY constraint. */
export function isUniqueViolation(err: unknown): boolean {
  for (let e = err as { message?: string; code?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.code === "23505" || /UNIQUE constraint failed|PRIMARY KEY constraint failed|SQLITE_CONSTRAINT_(UNIQUE|PRIMARYKEY)/.test(String(e.message ?? e.code))) return true;
  }
  return false;
}
