/** What every feature receives: built once by the registry and passed along as a value. */
import type { Config } from "./config.ts";
import type { Db } from "./db/db.ts";
import type { Log } from "./log.ts";

export type Ctx = {
  db: Db;
  config: Config;
  log: Log;
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
