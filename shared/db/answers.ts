/**
 * Answers derived from the tool catalogue (get_tools, /tools_for_role), kept per registry while the
 * database's catalogue generation is unchanged. Triggers raise the generation in the transaction of every
 * change to services, tools, roles or tool_roles, whoever writes (this instance, another one, an import,
 * a hand-made SQL change), and every request reads it: an answer is never older than the request.
 */
import { sql } from "drizzle-orm";
import { type Ctx, firstRow, prepareOnce } from "../context.ts";

type Kept = { generation: number; value: unknown; size: number };
/** What one registry keeps: answers by key, and their total size. */
export type KeptAnswers = { answers: Map<string, Kept>; size: number };

// What one registry keeps is bounded in bytes (REGISTRY_KEPT_ANSWERS_BYTES): each answer counts its own
// size, its key's and what a kept entry costs besides, so answers to many callers' keys (role names need
// not exist) count too. Over the bound the least recently used answers are dropped until the new one
// fits; they are rebuilt on demand.
const ENTRY_BYTES = 200;

/** The catalogue generation now, as the database has it; null if its row is gone (then nothing is kept). */
export async function catalogueGeneration(ctx: Ctx): Promise<number | null> {
  const row = await firstRow(
    prepareOnce(ctx, "catalogue_generation", () => {
      const { catalogueState } = ctx.tables;
      return ctx.db.select({ generation: catalogueState.generation }).from(catalogueState).where(sql`${catalogueState.id} = 1`);
    }),
    {},
  );
  return row ? Number(row.generation) : null;
}

/**
 * The answer named `key` for the current catalogue: kept from an earlier request of the same generation,
 * or computed by `compute` (its `size`, e.g. a text's length, counts against the bound). An answer is kept
 * only when the generation was the same before and after computing it, so it cannot hold a change
 * committed meanwhile. `compute` may throw (e.g. not_found): nothing is kept then.
 */
export async function fromCatalogue<T>(ctx: Ctx, key: string, compute: () => Promise<T>, size: (value: T) => number): Promise<T> {
  const memo = ctx.answers;
  const generation = await catalogueGeneration(ctx);
  // Without its row no trigger can raise the number: every answer is computed anew.
  if (generation === null) return compute();
  const kept = memo.answers.get(key);
  if (kept && kept.generation === generation) {
    // The map's order is the order of use: the first entry is the least recently used.
    memo.answers.delete(key);
    memo.answers.set(key, kept);
    return kept.value as T;
  }
  const value = await compute();
  if ((await catalogueGeneration(ctx)) === generation) keep(memo, ctx.config.keptAnswersBytes, key, { generation, value, size: size(value) + key.length * 2 + ENTRY_BYTES });
  return value;
}

// Stores an answer under `key`, first dropping the least recently used ones while the bound would be crossed.
function keep(memo: KeptAnswers, bound: number, key: string, answer: Kept): void {
  const old = memo.answers.get(key);
  if (old) {
    memo.answers.delete(key);
    memo.size -= old.size;
  }
  // One answer larger than the whole bound is not kept at all (it would evict everything for nothing).
  if (answer.size > bound) return;
  for (const [oldest, dropped] of memo.answers) {
    if (memo.size + answer.size <= bound) break;
    memo.answers.delete(oldest);
    memo.size -= dropped.size;
  }
  memo.answers.set(key, answer);
  memo.size += answer.size;
}
