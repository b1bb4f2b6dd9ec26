/**
 * A local SQLite file (or :memory:) on one connection of the `libsql` engine, shared safely with other
 * processes (another instance, the stdio server, an import, sqlite3 by hand).
 *
 * What was measured on libsql 0.5.29, and what this file does about it:
 * - `get()` right after `all()` on one native statement returns the previous call's row when the new call
 *   finds none. A statement is therefore only ever run with one method: the cache key is method + SQL text.
 * - A statement that failed with SQLITE_BUSY stays un-reset: its connection keeps a frozen read snapshot
 *   and every later COMMIT fails ("SQL statements in progress"). Every write therefore runs inside
 *   `BEGIN IMMEDIATE … COMMIT`, so a busy database fails at BEGIN (an exec, which leaves nothing behind),
 *   and any other failure that may leave a statement behind replaces the connection.
 * - The engine's busy handler waits synchronously, stopping the event loop: the wait here is asynchronous
 *   (short sleeps between tries) and ends with a clear "database is busy" error after `busyTimeoutMs`.
 * Statements run synchronously: a transaction never spans an await, so requests never interleave inside one.
 */
import { closeSync, openSync, statSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { AppError, databaseErrors } from "../errors.ts";

type NativeStatement = {
  reader: boolean;
  run(params: unknown[]): unknown;
  all(params: unknown[]): unknown[];
  get(params: unknown[]): unknown;
  raw(on: boolean): NativeStatement;
};
type NativeDb = { prepare(text: string): NativeStatement; exec(text: string): void; close(): void; readonly inTransaction: boolean };

type Method = "run" | "all" | "values" | "get";
/** Rows as the native call returned them, arrays of column values (raw mode), for drizzle to map. */
// biome-ignore lint/suspicious/noExplicitAny: drizzle's proxy callback types its rows as any[].
type Rows = any[];
type Query = { sql: string; params: unknown[]; method: Method };
export type SqliteOptions = { path: string; synchronous: "full" | "normal"; busyTimeoutMs: number; warn(message: string): void };

/** The local engine as the drizzle proxy and the migrator use it. */
export type LocalSqlite = {
  /** Runs one statement (a write in its own immediate transaction), waiting while another process holds the write lock. */
  query(q: Query): Promise<{ rows: Rows }>;
  /** Runs statements all-or-nothing in one immediate transaction; nothing else runs on the connection meanwhile. */
  batch(queries: Query[]): Promise<{ rows: Rows }[]>;
  /** Runs `work` holding the write lock (for migrations: two processes starting at once apply them one after the other). */
  exclusive<T>(work: () => Promise<T>): Promise<T>;
  /** Runs migration SQL as it is; only inside exclusive(). */
  exec(text: string): void;
  /** A read and a take-and-release of the write lock, within `deadlineMs`: what /ready asks. */
  check(deadlineMs: number): Promise<void>;
  close(): void;
};

// Bounded: a multi-row insert has a text per row count.
const MAX_STATEMENTS = 500;
// Statements drizzle builds for a change start with one of these words; everything else only reads.
const WRITE = /^\s*(insert|update|delete|replace)\b/i;
// SQLite answers SQLITE_BUSY (and its extended codes) while another connection holds the lock it needs.
const isBusy = (err: unknown) => /^SQLITE_(BUSY|LOCKED)/.test(String((err as { code?: unknown })?.code ?? ""));
// A constraint violation ends its statement cleanly (measured): the connection stays as it is.
const isConstraint = (err: unknown) => String((err as { code?: unknown })?.code ?? "").startsWith("SQLITE_CONSTRAINT");

/** The error a caller sees when the wait for the write lock ran out. */
function busyError(seconds: number): AppError {
  databaseErrors.busy++;
  return new AppError("unavailable", `The database is busy (another process has held its write lock for ${seconds} s); try again`, 503);
}

/** Opens the file (WAL, foreign keys, the configured synchronous level) and returns the engine. */
export async function openLocalSqlite(opts: SqliteOptions): Promise<LocalSqlite> {
  const { default: Database } = (await import("libsql")) as unknown as { default: new (path: string, o: { timeout: number }) => NativeDb };
  const memory = opts.path === ":memory:";
  if (!memory) createPrivately(opts.path, opts.warn);
  const open = () => {
    // timeout 0: never the engine's blocking wait; busy answers are waited for here, asynchronously.
    const native = new Database(opts.path, { timeout: 0 });
    try {
      if (!memory) native.exec("PRAGMA journal_mode=WAL");
      // FULL: a commit is on disk before it is acknowledged, also across a power loss (docs/configuration.md).
      native.exec(`PRAGMA synchronous=${opts.synchronous === "normal" ? "NORMAL" : "FULL"}`);
      native.exec("PRAGMA foreign_keys=ON");
      // A page cache of up to 32 MiB (SQLite's default is 2 MB): on a 73 MB catalogue of 10,000 services and
      // 100,000 users a token lookup took 18.6 µs with the default and 12.3 with 64 MiB (bench/, issue 21).
      native.exec("PRAGMA cache_size=-32768");
    } catch (err) {
      native.close();
      throw err;
    }
    const statements: Record<Method, Map<string, NativeStatement>> = { run: new Map(), all: new Map(), values: new Map(), get: new Map() };
    return { native, statements };
  };
  let conn = await retryBusy(open, opts.busyTimeoutMs);

  // Drops the connection with everything a failed statement may have left on it (snapshot, transaction).
  const replace = () => {
    if (memory) return rollback();
    const old = conn;
    conn = open();
    try {
      old.native.close();
    } catch {
      /* already unusable */
    }
  };
  const rollback = () => {
    try {
      if (conn.native.inTransaction) conn.native.exec("ROLLBACK");
    } catch {
      /* replaced below */
    }
    if (conn.native.inTransaction && !memory) replace();
  };
  // After a failure other than a constraint violation (which ends its statement cleanly), nothing of the
  // connection is trusted: roll back, then open a new one.
  const recover = (err: unknown) => {
    if (isConstraint(err)) return rollback();
    rollback();
    // If the file cannot be opened again right now, the old connection stays and the next failure tries again.
    try {
      replace();
    } catch {
      /* kept */
    }
  };
  const statement = (text: string, method: Method) => {
    // One map per method, keyed by the text itself: drizzle's prepared queries pass the same string, whose hash V8 keeps.
    const byText = conn.statements[method];
    let found = byText.get(text);
    if (!found) {
      if (byText.size >= MAX_STATEMENTS) byText.clear();
      found = conn.native.prepare(text);
      // drizzle maps rows given as arrays of column values: raw mode, set once (each toggle is a native call).
      if (found.reader) found.raw(true);
      byText.set(text, found);
    }
    return found;
  };
  // The parameters as one array: spread out, a single parameter that is null (or a blob) would be taken
  // for an object of named parameters ("failed to downcast any to object"), and arrays would be flattened.
  const step = (q: Query) => {
    const s = statement(q.sql, q.method);
    if (q.method === "run") {
      s.run(q.params);
      return { rows: [] as Rows };
    }
    return { rows: (q.method === "get" ? s.get(q.params) : s.all(q.params)) as Rows };
  };
  // `work` inside BEGIN IMMEDIATE … COMMIT: a busy database fails at BEGIN, before anything ran.
  const transaction = <T>(work: () => T): T => {
    try {
      conn.native.exec("BEGIN IMMEDIATE");
    } catch (err) {
      // Not busy: something is wrong with the connection itself (a transaction it should not have).
      if (!isBusy(err)) recover(err);
      throw err;
    }
    try {
      const result = work();
      conn.native.exec("COMMIT");
      return result;
    } catch (err) {
      recover(err);
      throw err;
    }
  };
  // Inside exclusive() (migrations) the transaction is already ours.
  let migrating = false;
  const run = (q: Query) => {
    if (migrating) return step(q);
    if (WRITE.test(q.sql)) return transaction(() => step(q));
    try {
      return step(q);
    } catch (err) {
      // A read that failed midway may leave its statement un-reset, holding a snapshot.
      recover(err);
      throw err;
    }
  };
  return {
    query: (q) => retryBusy(() => run(q), opts.busyTimeoutMs),
    batch: (queries) => retryBusy(() => (migrating ? queries.map(step) : transaction(() => queries.map(step))), opts.busyTimeoutMs),
    async exclusive(work) {
      await retryBusy(() => conn.native.exec("BEGIN IMMEDIATE"), opts.busyTimeoutMs);
      migrating = true;
      try {
        const result = await work();
        conn.native.exec("COMMIT");
        return result;
      } catch (err) {
        rollback();
        throw err;
      } finally {
        migrating = false;
      }
    },
    async check(deadlineMs) {
      await retryBusy(() => {
        step({ sql: "select 1", params: [], method: "all" });
        transaction(() => undefined);
      }, deadlineMs);
    },
    exec: (text) => conn.native.exec(text),
    close: () => conn.native.close(),
  };
}

// A new database file is created readable by its owner only; SQLite gives its -wal and -shm files the
// same mode. An existing file more open than that is reported, not changed (an operator may mean it).
function createPrivately(path: string, warn: (message: string) => void): void {
  try {
    closeSync(openSync(path, "wx", 0o600));
    return;
  } catch (err) {
    if ((err as { code?: string }).code !== "EEXIST") throw err;
  }
  if ((statSync(path).mode & 0o077) !== 0) {
    warn(`The database file ${path} is readable by other users: chmod 600 it (and its -wal and -shm files)`);
  }
}

// Runs `work`; while the database answers busy, again after short, growing sleeps, up to `timeoutMs`.
function retryBusy<T>(work: () => T, timeoutMs: number): Promise<T> {
  try {
    return Promise.resolve(work());
  } catch (err) {
    if (!isBusy(err)) return Promise.reject(err);
  }
  return waitForLock(work, timeoutMs);
}

async function waitForLock<T>(work: () => T, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let pause = 1; ; pause = Math.min(pause * 2, 50)) {
    if (Date.now() + pause > deadline) throw busyError(Math.round(timeoutMs / 100) / 10);
    // A little randomness so two waiting processes do not retry in lockstep.
    await sleep(pause * (0.5 + Math.random()));
    try {
      return work();
    } catch (err) {
      if (!isBusy(err)) throw err;
    }
  }
}
