/**
 * User keys: keys an admin issues to one person. A user key opens only the gateway, only as its user
 * (features/access enforces that). The key is shown once; the registry keeps its SHA-256 digest.
 */
import { createHash, randomBytes } from "node:crypto";
import { and, asc, eq, sql } from "drizzle-orm";
import * as v from "valibot";
import type { Caller, Ctx } from "../../shared/context.ts";
import { firstRow, inBackground, prepareOnce } from "../../shared/context.ts";
import { AppError } from "../../shared/errors.ts";
import type { Feature } from "../../shared/feature.ts";
import { defineTool } from "../../shared/mcp.ts";
import { UserId } from "../../shared/names.ts";
import { nameSchema } from "../../shared/validate.ts";

/** Every user key starts so: the registry (and a secret scanner) tells one from an admin or agent key without a lookup. */
const USER_KEY_PREFIX = "mcpr_user_";
// "last used" is written at most once a minute per key: a write (an fsync) per gateway request would cost more than the request.
const LAST_USED_EVERY_MS = 60_000;

const Label = nameSchema(64);
const CreateInput = v.object({ user_id: UserId, label: v.optional(Label, "default") });
const ListInput = v.object({ user_id: v.optional(UserId) });
const RevokeInput = v.object({ user_id: UserId, label: Label });

const digestOf = (key: string) => createHash("sha256").update(key).digest("hex");

/** True when an Authorization header carries a user key (by its prefix). */
export function isUserKey(authorization: string | undefined): boolean {
  return /^Bearer\s+mcpr_user_/i.test(authorization ?? "");
}

/** The caller a user key stands for, or null for a key that matches none (revoked, or never issued). */
export async function resolveUserKey(ctx: Ctx, authorization: string): Promise<Caller | null> {
  const key = /^Bearer\s+(\S+)\s*$/i.exec(authorization)?.[1];
  if (!key) return null;
  // A lookup by digest: the key itself is never compared, stored or logged.
  const row = await firstRow(
    prepareOnce(ctx, "resolve_user_key", () => {
      const { userKeys, users } = ctx.tables;
      return ctx.db
        .select({ id: userKeys.id, label: userKeys.label, lastUsedAt: userKeys.lastUsedAt, userId: users.userId })
        .from(userKeys)
        .innerJoin(users, eq(users.id, userKeys.userId))
        .where(eq(userKeys.digest, sql.placeholder("digest")))
        .limit(1);
    }),
    { digest: digestOf(key) },
  );
  if (!row) return null;
  const now = Date.now();
  if (!row.lastUsedAt || now - Date.parse(row.lastUsedAt) >= LAST_USED_EVERY_MS) {
    const { userKeys } = ctx.tables;
    inBackground(ctx, "Recording a user key's use", () =>
      ctx.db
        .update(userKeys)
        .set({ lastUsedAt: new Date(now).toISOString() })
        .where(eq(userKeys.id, row.id)),
    );
  }
  return { principal: "user", label: `user-key:${row.userId}/${row.label}`, userId: row.userId };
}

// The row id of a user, or not_found.
async function userRowId(ctx: Ctx, userId: string, action: string): Promise<number> {
  const { users } = ctx.tables;
  const [user] = await ctx.db.select({ id: users.id }).from(users).where(eq(users.userId, userId)).limit(1);
  if (!user) throw new AppError("not_found", `Cannot ${action}: no such user; record it first with register_user or assign_role_to_user`);
  return user.id;
}

/** Issues a key to a user (who must exist); the key is returned once and only its digest is kept. */
async function createUserKey(ctx: Ctx, input: v.InferOutput<typeof CreateInput>): Promise<string> {
  const { userKeys } = ctx.tables;
  const action = `create a key labelled "${input.label}" for user "${input.user_id}"`;
  const userId = await userRowId(ctx, input.user_id, action);
  const key = USER_KEY_PREFIX + randomBytes(32).toString("base64url");
  const inserted = await ctx.db
    .insert(userKeys)
    .values({ userId, label: input.label, digest: digestOf(key) })
    .onConflictDoNothing()
    .returning({ id: userKeys.id });
  if (inserted.length === 0) throw new AppError("conflict", `Cannot ${action}: the user already has a key with that label; revoke it first or choose another label`);
  return key;
}

/** The keys issued (to one user, or to everyone): labels and times, never a key. */
async function listUserKeys(ctx: Ctx, input: v.InferOutput<typeof ListInput>) {
  const { userKeys, users } = ctx.tables;
  return ctx.db
    .select({ user_id: users.userId, label: userKeys.label, created_at: userKeys.createdAt, last_used_at: userKeys.lastUsedAt })
    .from(userKeys)
    .innerJoin(users, eq(users.id, userKeys.userId))
    .where(input.user_id === undefined ? undefined : eq(users.userId, input.user_id))
    .orderBy(asc(users.userId), asc(userKeys.label));
}

/** Revokes a user's key by its label: the next request with it is refused, on every instance. */
async function revokeUserKey(ctx: Ctx, input: v.InferOutput<typeof RevokeInput>): Promise<void> {
  const { userKeys, users } = ctx.tables;
  const deleted = await ctx.db
    .delete(userKeys)
    .where(and(eq(userKeys.label, input.label), eq(userKeys.userId, sql`(select ${users.id} from ${users} where ${users.userId} = ${input.user_id})`)))
    .returning({ id: userKeys.id });
  if (deleted.length > 0) return;
  const action = `revoke the key labelled "${input.label}" of user "${input.user_id}"`;
  await userRowId(ctx, input.user_id, action);
  throw new AppError("not_found", `Cannot ${action}: the user has no key with that label`);
}

const KeyList = v.object({
  keys: v.array(v.object({ user_id: v.string(), label: v.string(), created_at: v.string(), last_used_at: v.nullable(v.string()) })),
});

const tools = [
  defineTool({
    name: "create_user_key",
    title: "Issue a gateway key to a user",
    description:
      "Issue a key with which one person opens the gateway (/gateway/mcp) as that user, e.g. from a desktop MCP client. " +
      "The key is shown only in this answer; the registry keeps a digest. It opens nothing else.",
    input: CreateInput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    async run(ctx, input) {
      const key = await createUserKey(ctx, input);
      return {
        text: `Key "${input.label}" for user "${input.user_id}": ${key} (shown only now: give it to the user; it opens only the gateway and the registry API)`,
        data: { user_id: input.user_id, label: input.label, key },
      };
    },
    output: v.object({ user_id: v.string(), label: v.string(), key: v.string() }),
  }),
  defineTool({
    name: "list_user_keys",
    title: "List users' gateway keys",
    description: "List the gateway keys issued (to one user, or to all): labels, when each was created and last used. Never the keys.",
    input: ListInput,
    output: KeyList,
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      const keys = await listUserKeys(ctx, input);
      return { text: JSON.stringify(keys), data: { keys } };
    },
  }),
  defineTool({
    name: "revoke_user_key",
    title: "Revoke a user's gateway key",
    description: "Revoke a user's gateway key by its label; the key is refused from the next request on.",
    input: RevokeInput,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      await revokeUserKey(ctx, input);
      return { text: `Key "${input.label}" of user "${input.user_id}" revoked.` };
    },
  }),
];

/** Users' gateway keys: the admin's tools (recognising a key is features/access's, through resolveUserKey). */
export const userKeys: Feature = { name: "user_keys", tools };
