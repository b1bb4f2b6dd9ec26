/** Credentials: users' tokens for services — stored encrypted, read by agents through /token, revoked by tool. */
import { and, eq, notLike, sql } from "drizzle-orm";
import { type Context, Hono } from "hono";
import * as v from "valibot";
import { audited, auditTarget } from "../audit/audit.ts";
import { type Ctx, firstRow, prepareOnce } from "../../shared/context.ts";
import { reencryptSecrets } from "../../shared/crypto.ts";
import { AppError } from "../../shared/errors.ts";
import { type AppEnv, readInput } from "../../shared/http.ts";
import { ServiceName, UserId } from "../../shared/names.ts";
import type { Feature } from "../../shared/feature.ts";
import { defineTool } from "../../shared/mcp.ts";

const MAX_TOKEN_BYTES = 8192;
const encoder = new TextEncoder();

/** A user's token: surrounding whitespace is never part of an HTTP credential; control characters would break the header. */
export const Token = v.pipe(
  v.string("must be a string"),
  v.trim(),
  v.nonEmpty("must not be empty"),
  v.check((s) => encoder.encode(s).length <= MAX_TOKEN_BYTES, `must be at most ${MAX_TOKEN_BYTES} bytes`),
  v.regex(/^[^\p{Cc}]*$/u, "must not contain control characters"),
);

const AuthorizeInput = v.object({ service_name: ServiceName, user_id: UserId, token: Token });
type AuthorizeInput = v.InferOutput<typeof AuthorizeInput>;

export const UserServiceInput = v.object({ service_name: ServiceName, user_id: UserId });
type UserServiceInput = v.InferOutput<typeof UserServiceInput>;

/** What /token answers: the credential and how to send it, or "Ok" for a service that needs none. */
type TokenAnswer = { token: string; method_authorization: string } | { status: "Ok" };

// The row a ciphertext belongs to: service row id (never reused) and user name (unique). A ciphertext
// copied to another row, or left from a removed service re-added under the same name, does not decrypt.
function tokenAad(serviceId: number, userId: string): string {
  return `user_tokens\n${serviceId}\n${userId}`;
}

/** A token encrypted for its row (service row id, user name): it decrypts nowhere else. */
export function sealToken(ctx: Ctx, serviceId: number, userId: string, token: string): Promise<string> {
  return ctx.vault.encrypt(token, tokenAad(serviceId, userId));
}

/**
 * Encrypts a token for its row (service row id, user name) and stores it, creating an unknown user.
 * With replace, an existing token is replaced (user and token written all-or-nothing); without, it is
 * kept. True when the token was written.
 */
export async function sealUserToken(ctx: Ctx, serviceId: number, userId: string, token: string, opts: { replace: boolean }): Promise<boolean> {
  const { users, userTokens } = ctx.tables;
  const ciphertext = await sealToken(ctx, serviceId, userId, token);
  const updatedAt = new Date().toISOString();
  const row = { userId: sql`(select ${users.id} from ${users} where ${users.userId} = ${userId})`, serviceId, ciphertext, updatedAt };
  if (!opts.replace) {
    await ctx.db.insert(users).values({ userId }).onConflictDoNothing();
    return (await ctx.db.insert(userTokens).values(row).onConflictDoNothing().returning({ serviceId: userTokens.serviceId })).length > 0;
  }
  await ctx.atomic((q) => [
    q.insert(users).values({ userId }).onConflictDoNothing(),
    q
      .insert(userTokens)
      .values(row)
      .onConflictDoUpdate({ target: [userTokens.userId, userTokens.serviceId], set: { ciphertext, updatedAt } }),
  ]);
  return true;
}

/** A user's stored token for a service, decrypted; null when it was not sealed for this row (moved or altered: ask the user again). */
export async function openUserToken(ctx: Ctx, serviceId: number, userId: string, ciphertext: string): Promise<string | null> {
  try {
    return await ctx.vault.decrypt(ciphertext, tokenAad(serviceId, userId));
  } catch {
    ctx.log.warn("Stored token cannot be decrypted for its row", { service_id: serviceId, user_id: userId });
    return null;
  }
}

/** Stores or replaces a user's token for a service that requires authorization; an unknown user is created. */
async function storeUserToken(ctx: Ctx, input: AuthorizeInput): Promise<void> {
  const { services } = ctx.tables;
  const action = `store the token of user "${input.user_id}" for service "${input.service_name}"`;
  const service = await findServiceForToken(ctx, input.service_name, action);
  if (!service.requiresAuthorization) throw new AppError("invalid_input", `Cannot ${action}: the service does not require authorization`);
  try {
    await sealUserToken(ctx, service.id, input.user_id, input.token, { replace: true });
  } catch (err) {
    // The service may have been removed since it was read (foreign key): say so rather than fail internally.
    const [still] = await ctx.db.select({ id: services.id }).from(services).where(eq(services.id, service.id)).limit(1);
    if (!still) throw new AppError("not_found", `Cannot ${action}: no such service`);
    throw err;
  }
}

/** Removes a user's stored token for a service; not_found when none is stored. */
async function revokeUserToken(ctx: Ctx, input: UserServiceInput): Promise<void> {
  const { services, users, userTokens } = ctx.tables;
  const action = `revoke the token of user "${input.user_id}" for service "${input.service_name}"`;
  const deleted = await ctx.db
    .delete(userTokens)
    .where(
      and(
        eq(userTokens.serviceId, sql`(select ${services.id} from ${services} where ${services.name} = ${input.service_name})`),
        eq(userTokens.userId, sql`(select ${users.id} from ${users} where ${users.userId} = ${input.user_id})`),
      ),
    )
    .returning({ serviceId: userTokens.serviceId });
  if (deleted.length === 0) {
    await findServiceForToken(ctx, input.service_name, action);
    throw new AppError("not_found", `Cannot ${action}: no token is stored`);
  }
}

/** The credential an agent sends to a service for a user, in one query; token_missing when there is none. */
async function readUserToken(ctx: Ctx, input: UserServiceInput): Promise<TokenAnswer> {
  const action = `read the token of user "${input.user_id}" for service "${input.service_name}"`;
  const row = await firstRow(tokenQuery(ctx), { serviceName: input.service_name, userId: input.user_id });
  if (!row) throw new AppError("not_found", `Cannot ${action}: no such service`);
  if (!row.required) return { status: "Ok" };
  if (!row.ciphertext) throw new AppError("token_missing", `Cannot ${action}: no token is stored; ask the user for it and call authorize_user_to_service`);
  const token = await openUserToken(ctx, row.serviceId, input.user_id, row.ciphertext);
  // Not sealed for this row: treated as missing so the agent asks the user again; storing it anew repairs the row.
  if (token === null) throw new AppError("token_missing", `Cannot ${action}: the stored token cannot be decrypted; ask the user for it again and call authorize_user_to_service`);
  return { token, method_authorization: row.method };
}

// The /token query, prepared once per registry (building it costs more than running it).
function tokenQuery(ctx: Ctx) {
  return prepareOnce(ctx, "read_user_token", () => {
    const { services, users, userTokens } = ctx.tables;
    return ctx.db
      .select({ serviceId: services.id, required: services.requiresAuthorization, method: services.methodAuthorization, ciphertext: userTokens.ciphertext })
      .from(services)
      .leftJoin(users, eq(users.userId, sql.placeholder("userId")))
      .leftJoin(userTokens, and(eq(userTokens.serviceId, services.id), eq(userTokens.userId, users.id)))
      .where(eq(services.name, sql.placeholder("serviceName")))
      .limit(1);
  });
}

// Start-up check of the stored user tokens against the vault (shared/crypto.ts reencryptSecrets).
async function reencryptUserTokens(ctx: Ctx): Promise<number> {
  const { services, users, userTokens } = ctx.tables;
  // Only rows not already under the current key are read.
  const rows = await ctx.db
    .select({ userRowId: userTokens.userId, serviceId: userTokens.serviceId, userId: users.userId, serviceName: services.name, ciphertext: userTokens.ciphertext })
    .from(userTokens)
    .innerJoin(users, eq(users.id, userTokens.userId))
    .innerJoin(services, eq(services.id, userTokens.serviceId))
    .where(notLike(userTokens.ciphertext, `${ctx.vault.currentPrefix}%`));
  return reencryptSecrets(
    ctx.vault,
    ctx.config,
    ctx.log,
    "user token",
    rows.map((r) => ({
      sealed: r.ciphertext,
      aad: tokenAad(r.serviceId, r.userId),
      names: { service_name: r.serviceName, user_id: r.userId },
      // Only if unchanged meanwhile (another instance may rotate or the user may store a new token).
      replace: (ciphertext) =>
        ctx.db
          .update(userTokens)
          .set({ ciphertext })
          .where(and(eq(userTokens.userId, r.userRowId), eq(userTokens.serviceId, r.serviceId), eq(userTokens.ciphertext, r.ciphertext))),
    })),
  );
}

async function findServiceForToken(ctx: Ctx, name: string, action: string) {
  const { services } = ctx.tables;
  const [service] = await ctx.db.select({ id: services.id, requiresAuthorization: services.requiresAuthorization }).from(services).where(eq(services.name, name)).limit(1);
  if (!service) throw new AppError("not_found", `Cannot ${action}: no such service`);
  return service;
}

const tools = [
  defineTool({
    name: "authorize_user_to_service",
    title: "Store a user's token for a service",
    description:
      "Store (or replace) the token a user gave for a service that requires authorization; an unknown user is created. " +
      "Call it after /token answered 401 token_missing and the user supplied the token, then repeat the original request.",
    input: AuthorizeInput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      await storeUserToken(ctx, input);
      return { text: `Token stored for user "${input.user_id}" on service "${input.service_name}". Please repeat your original request.` };
    },
  }),
  defineTool({
    name: "revoke_user_token",
    title: "Revoke a user's token for a service",
    description: "Remove the token a user stored for a service.",
    input: UserServiceInput,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      await revokeUserToken(ctx, input);
      return { text: `Token of user "${input.user_id}" for service "${input.service_name}" revoked.` };
    },
  }),
];

async function tokenRoute(c: Context<AppEnv>): Promise<Response> {
  const ctx = c.get("ctx");
  const input = await readInput(c, UserServiceInput, "read token");
  // Every read is an audit event; a refused one says why (the message names no secret).
  const answer = await audited(ctx, { caller: c.get("caller"), action: "read_token", target: auditTarget(input) }, () => readUserToken(ctx, input), { failureDetail: true });
  return c.json(answer);
}

/** GET /token (query string or JSON body) and POST /token: a user's credential for a service. */
const routes = new Hono<AppEnv>().get("/token", tokenRoute).post("/token", tokenRoute);

/** Users' credentials: tools, /token, and the start-up check of stored tokens against the key. */
export const credentials: Feature = { name: "credentials", tools, routes, prepare: reencryptUserTokens };
