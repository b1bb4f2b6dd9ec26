/** Opening the database, applying migrations, and the few engine-specific helpers features rely on. */
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createClient } from "@libsql/client";
import type { BatchItem } from "drizzle-orm/batch";
import { drizzle, type LibSQLDatabase } from "drizzle-orm/libsql";
import { migrate } from "drizzle-orm/libsql/migrator";
import * as schema from "./schema.ts";

export { schema };
export type Db = LibSQLDatabase<typeof schema>;
export type Store = { db: Db; url: string; close(): void };

const MIGRATIONS = resolve(dirname(fileURLToPath(import.meta.url)), "../../drizzle/sqlite");

/** Opens the database at a libSQL URL, turns on WAL for files, and applies pending migrations. */
export async function openStore(url: string): Promise<Store> {
  const client = createClient({ url });
  if (url.startsWith("file:")) await client.execute("PRAGMA journal_mode=WAL");
  // libSQL turns foreign keys on for every connection it opens; make sure of it on this one.
  await client.execute("PRAGMA foreign_keys=ON");
  const db = drizzle(client, { schema });
  await migrate(db, { migrationsFolder: MIGRATIONS });
  return { db, url, close: () => client.close() };
}

type Atomic = [BatchItem<"sqlite">, ...BatchItem<"sqlite">[]];

/**
 * Runs the statements built by `build` all-or-nothing. On SQLite this is one batch: it runs on one
 * connection without yielding, so concurrent requests never interleave inside it.
 */
export async function atomic(db: Db, build: (q: Db) => Atomic): Promise<void> {
  await db.batch(build(db));
}

/** True when an error (or its cause) is a violation of a UNIQUE or PRIMARY KEY constraint. */
export function isUniqueViolation(err: unknown): boolean {
  for (let e = err as { message?: string; code?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.code === "23505" || /UNIQUE constraint failed|PRIMARY KEY constraint failed|SQLITE_CONSTRAINT_(UNIQUE|PRIMARYKEY)/.test(String(e.message ?? e.code))) return true;
  }
  return false;
}
