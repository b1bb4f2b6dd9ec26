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

// Bounds on what one registry keeps (keys come from callers: role names need not exist). Over either
// bound everything is dropped and rebuilt on demand.
const MAX_ANSWERS = 1000;
const MAX_SIZE = 8_000_000;

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
  if (kept && kept.generation === generation) return kept.value as T;
  const value = await compute();
  if ((await catalogueGeneration(ctx)) === generation) {
    const bytes = size(value);
    if (kept) memo.size -= kept.size;
    if (memo.answers.size >= MAX_ANSWERS || memo.size + bytes > MAX_SIZE) {
      memo.answers.clear();
      memo.size = 0;
    }
    memo.answers.set(key, { generation, value, size: bytes });
    memo.size += bytes;
  }
  return value;
}
