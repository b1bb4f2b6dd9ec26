/** What every feature receives: built once by the registry and passed along as a value. */
import type { Config } from "./config.ts";
import type { Vault } from "./crypto.ts";
import type { Db, Engine, Tables } from "./db/db.ts";
import type { Log } from "./log.ts";

export type Ctx = {
  db: Db;
  /** The tables of the engine in use: take tables from here, never import them. */
  tables: Tables;
  engine: Engine;
  config: Config;
  log: Log;
  /** Encrypts and decrypts user tokens (key loaded once at start-up). */
  vault: Vault;
  /** Work that outlives a request (hooks); awaited on shutdown. */
  background: Set<Promise<unknown>>;
};

/** Runs `work` in the background, logging (never throwing) its failure and remembering it until it ends. */
export function inBackground(ctx: Ctx, what: string, work: () => Promise<unknown>): void {
  const p: Promise<unknown> = work()
    .catch((err) => ctx.log.error(`${what} failed`, { reason: String((err as Error)?.message ?? err) }))
    .finally(() => ctx.background.delete(p));
  ctx.background.add(p);
}
