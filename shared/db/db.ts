/** Opening the database (SQLite/libSQL or PostgreSQL), migrations, and the few engine-specific helpers. */
import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";
import { type SQL, sql, type SQLWrapper } from "drizzle-orm";
import type { BatchItem } from "drizzle-orm/batch";
import { drizzle, type LibSQLDatabase } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";
import * as pgSchema from "./schema.pg.ts";
import * as schema from "./schema.ts";
import { openLocalSqlite } from "./sqlite.ts";

export type Tables = typeof schema;
/**
 * The query interface features use. It is typed with the SQLite dialect; on PostgreSQL the same builder
 * calls run on a postgres-js drizzle instance with the tables of schema.pg.ts (same names, same columns).
 * Features only use the builder subset both engines share, and take tables from the store, never import them.
 */
export type Db = LibSQLDatabase<Tables>;
export type Engine = "sqlite" | "postgres";
/** Statements for atomic(): built on the builder it is given (on PostgreSQL, the transaction's). */
type Atomic = [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]];

/**
 * The database as the registry uses it, whatever the engine: the query builder (`db`, over `tables`),
 * statements run all-or-nothing (`atomic`), raw SQL (`execute`), readiness. drizzle has no builder type
 * common to two dialects, so the PostgreSQL builder is presented as the SQLite-typed `Db` in openPostgres,
 * the one place that says so; what keeps that honest is that features use only the builder subset both
 * engines share (the whole suite runs on both) and test/schema_parity.test.ts holds the schemas together.
 */
export type Store = {
  db: Db;
  tables: Tables;
  engine: Engine;
  /**
   * Runs the statements built by `build` all-or-nothing and returns each one's result (rows for a statement
   * with .returning()). On SQLite one batch on one connection without yielding, so concurrent requests never
   * interleave inside it; on PostgreSQL a transaction, and `build` receives the transaction to build on.
   */
  atomic(build: (q: Db) => Atomic): Promise<unknown[]>;
  /** One raw SQL statement for atomic(), on the builder `q` it was given (its text may differ by engine). */
  statement(q: Db, query: SQL): BatchItem<"sqlite">;
  /** Runs one raw SQL statement (a sequence to move, a table to rename in a test). */
  execute(query: SQL): Promise<void>;
  /** Resolves when the database answers (and, for a local file, its write lock can be taken) within `deadlineMs`; else throws why. */
  ready(deadlineMs: number): Promise<void>;
  close(): Promise<void>;
};
/** How a local SQLite file is run: synchronous level, and how long a write waits for another process's lock. */
export type StoreOptions = { sqliteSync: "full" | "normal"; busyTimeoutMs: number; warn(message: string): void };
const DEFAULT_OPTIONS: StoreOptions = { sqliteSync: "full", busyTimeoutMs: 5000, warn: (message) => console.error(message) };

// The project's drizzle/ folder: two levels up from this file (shared/db/), one from the bundle `npm start` runs (dist/).
const HERE = dirname(fileURLToPath(import.meta.url));
const MIGRATIONS = existsSync(resolve(HERE, "../drizzle")) ? resolve(HERE, "../drizzle") : resolve(HERE, "../../drizzle");

/** True for a postgres:// or postgresql:// URL. */
function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//.test(url);
}

/** Opens the database at `url`, applies pending migrations, and returns the store. */
export async function openStore(url: string, options: StoreOptions = DEFAULT_OPTIONS): Promise<Store> {
  return isPostgresUrl(url) ? openPostgres(url) : openSqlite(url, options);
}

async function openSqlite(url: string, options: StoreOptions): Promise<Store> {
  if (url === ":memory:" || url.startsWith("file:")) return openLocal(url, options);
  // A remote libSQL server (libsql://, http(s)://).
  const client = createClient({ url });
  await client.execute("PRAGMA foreign_keys=ON");
  const db = drizzle(client, { schema });
  await migrate(db, { migrationsFolder: `${MIGRATIONS}/sqlite` });
  return {
    db,
    tables: schema,
    engine: "sqlite",
    atomic: (build) => db.batch(build(db)),
    statement: (q, query) => q.run(query),
    execute: async (query) => {
      await db.run(query);
    },
    ready: (ms) => withinDeadline(client.execute("select 1"), ms),
    close: async () => client.close(),
  };
}

// A local file (or :memory:) on one connection of `libsql` (the engine under @libsql/client), each
// statement prepared once per method and SQL text: @libsql/client prepares it again on every call, which
// was most of the cost of a hot path (bench/, docs/performance.md). How it stays correct: sqlite.ts.
// No db.transaction() here: on one connection, concurrent requests' statements would run inside it; use atomic().
async function openLocal(url: string, options: StoreOptions): Promise<Store> {
  // file:/abs, file:///abs and file:relative, without query options (as keyFilePath reads them).
  const path =
    url === ":memory:"
      ? url
      : url
          .slice("file:".length)
          .split("?")[0]
          .replace(/^\/\/(?=\/)/, "");
  const engine = await openLocalSqlite({ path, synchronous: options.sqliteSync, busyTimeoutMs: options.busyTimeoutMs, warn: options.warn });
  const { drizzle: drizzleProxy } = await import("drizzle-orm/sqlite-proxy");
  const { migrate: migrateProxy } = await import("drizzle-orm/sqlite-proxy/migrator");
  const db = drizzleProxy(
    (sql, params, method) => engine.query({ sql, params, method }),
    (queries) => engine.batch(queries),
    { schema },
  );
  // As libSQL's migrator: foreign keys off while tables are rebuilt (a pragma that only works outside a transaction).
  // Under the write lock: processes starting together on a new file migrate one after the other.
  engine.exec("PRAGMA foreign_keys=OFF");
  try {
    await engine.exclusive(() =>
      migrateProxy(
        db,
        async (queries) => {
          for (const q of queries) engine.exec(q);
        },
        { migrationsFolder: `${MIGRATIONS}/sqlite` },
      ),
    );
  } finally {
    engine.exec("PRAGMA foreign_keys=ON");
  }
  // The proxy's database type differs from libSQL's only in its raw result type, which features never see.
  const local = db as unknown as Db;
  return {
    db: local,
    tables: schema,
    engine: "sqlite",
    atomic: (build) => local.batch(build(local)),
    statement: (q, query) => q.run(query),
    execute: async (query) => {
      await local.run(query);
    },
    ready: (ms) => engine.check(ms),
    close: async () => engine.close(),
  };
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
  const pg = drizzlePg(client, { schema: pgSchema });
  // The one place the PostgreSQL builder is presented as the SQLite-typed Db (see Store).
  const asDb = (builder: unknown) => builder as Db;
  return {
    db: asDb(pg),
    tables: pgSchema as unknown as Tables,
    engine: "postgres",
    atomic: (build) =>
      pg.transaction(async (tx) => {
        const results: unknown[] = [];
        for (const statement of build(asDb(tx))) results.push(await statement);
        return results;
      }),
    // A transaction's execute() runs when atomic awaits it, in order, as the builders' statements do.
    statement: (q, query) => (q as unknown as { execute(query: SQL): BatchItem<"sqlite"> }).execute(query),
    execute: async (query) => {
      await pg.execute(query);
    },
    ready: (ms) => withinDeadline(client`select 1`.execute(), ms),
    close: () => client.end({ timeout: 5 }),
  };
}

// Resolves with `work` if it settles within `ms`, else rejects saying it did not.
async function withinDeadline(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The rows of a query as one JSON array text of objects with `fields`, in `orderBy` order ("[]" for none),
 * built by the database: for a large answer, turning every value into a JavaScript value and back into
 * JSON costs more than the query itself. Field names are code constants, never input; a field that is
 * itself JSON (a nested jsonArrayOf or jsonListOf) goes through asJson.
 */
export function jsonArrayOf(engine: Engine, fields: Record<string, SQLWrapper>, orderBy: SQL): SQL<string> {
  const pairs = sql.join(
    Object.entries(fields).map(([name, value]) => sql`${sql.raw(`'${name}'`)}, ${value}`),
    sql`, `,
  );
  // SQLite >= 3.44 (libsql ships 3.45) orders inside an aggregate, as PostgreSQL does.
  return engine === "postgres"
    ? sql<string>`coalesce(json_agg(json_build_object(${pairs}) order by ${orderBy}), '[]'::json)::text`
    : sql<string>`json_group_array(json_object(${pairs}) order by ${orderBy})`;
}

/** The values of a query's rows as one JSON array text, in `orderBy` order ("[]" for none). */
export function jsonListOf(engine: Engine, value: SQLWrapper, orderBy: SQL): SQL<string> {
  return engine === "postgres" ? sql<string>`coalesce(json_agg(${value} order by ${orderBy}), '[]'::json)::text` : sql<string>`json_group_array(${value} order by ${orderBy})`;
}

/** JSON text (e.g. a subquery over jsonListOf) as a JSON value, so that it nests as JSON, not as a string. */
export function asJson(engine: Engine, text: SQL): SQL {
  return engine === "postgres" ? sql`(${text})::json` : sql`json(${text})`;
}

/**
 * After rows were inserted with explicit ids (an import), makes sure new rows get larger ids. SQLite's
 * AUTOINCREMENT already follows explicit ids; a PostgreSQL identity sequence has to be moved.
 */
export async function syncIdSequence(store: Pick<Store, "engine" | "execute">, table: "tools" | "services" | "roles" | "users"): Promise<void> {
  if (store.engine !== "postgres") return;
  await store.execute(sql`select setval(pg_get_serial_sequence(${table}, 'id'), coalesce((select max(id) from ${sql.identifier(table)}), 0) + 1, false)`);
}

/** True when an error (or its cause) is a violation of a UNIQUE or PRIMARY KEY constraint. */
export function isUniqueViolation(err: unknown): boolean {
  for (let e = err as { message?: string; code?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.code === "23505" || /UNIQUE constraint failed|PRIMARY KEY constraint failed|SQLITE_CONSTRAINT_(UNIQUE|PRIMARYKEY)/.test(String(e.message ?? e.code))) return true;
  }
  return false;
}
