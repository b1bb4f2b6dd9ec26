/** Users: the people agents act for, each with at most one role. */
import { and, asc, eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import * as v from "valibot";
import { audited, auditTarget, recordAudit } from "../audit/audit.ts";
import { type Ctx, firstRow, prepareOnce } from "../../shared/context.ts";
import { AppError } from "../../shared/errors.ts";
import { type AppEnv, readInput } from "../../shared/http.ts";
import { RoleName, RoleNameOrNone, UserId } from "../../shared/names.ts";
import type { Feature } from "../../shared/feature.ts";
import { defineTool } from "../../shared/mcp.ts";

const UserRoleInput = v.object({ user_id: UserId, role_name: RoleName });
type UserRoleInput = v.InferOutput<typeof UserRoleInput>;

export const UserIdInput = v.object({ user_id: UserId });
type UserIdInput = v.InferOutput<typeof UserIdInput>;

/** Body of POST /register_user: role_name may be left out (or "" / null), then the role is not touched. */
export const RegisterUserInput = v.object({
  user_id: UserId,
  role_name: v.nullish(RoleNameOrNone, ""),
});
type RegisterUserInput = v.InferOutput<typeof RegisterUserInput>;

// The id of a role, or not_found.
async function findRoleId(ctx: Ctx, roleName: string, action: string): Promise<number> {
  const { roles } = ctx.tables;
  const [role] = await ctx.db.select({ id: roles.id }).from(roles).where(eq(roles.name, roleName)).limit(1);
  if (!role) throw new AppError("not_found", `Cannot ${action}: no such role`);
  return role.id;
}

/** Gives a user a role, replacing any role it had; an unknown user is created. */
async function assignRoleToUser(ctx: Ctx, input: UserRoleInput): Promise<void> {
  const { users } = ctx.tables;
  const action = `assign role "${input.role_name}" to user "${input.user_id}"`;
  const roleId = await findRoleId(ctx, input.role_name, action);
  try {
    await ctx.db.insert(users).values({ userId: input.user_id, roleId }).onConflictDoUpdate({ target: users.userId, set: { roleId } });
  } catch (err) {
    // The role was removed meanwhile (foreign key): say so.
    await findRoleId(ctx, input.role_name, action);
    throw err;
  }
}

/** Takes a role away from a user who has exactly that role. */
async function removeRoleFromUser(ctx: Ctx, input: UserRoleInput): Promise<void> {
  const { users, roles } = ctx.tables;
  const updated = await ctx.db
    .update(users)
    .set({ roleId: null })
    .where(and(eq(users.userId, input.user_id), eq(users.roleId, sql`(select ${roles.id} from ${roles} where ${roles.name} = ${input.role_name})`)))
    .returning({ id: users.id });
  if (updated.length > 0) return;
  // Nothing changed: find out why.
  const action = `remove role "${input.role_name}" from user "${input.user_id}"`;
  const [user] = await ctx.db.select({ role: roles.name }).from(users).leftJoin(roles, eq(roles.id, users.roleId)).where(eq(users.userId, input.user_id)).limit(1);
  if (!user) throw new AppError("not_found", `Cannot ${action}: no such user`);
  await findRoleId(ctx, input.role_name, action);
  throw new AppError("conflict", `Cannot ${action}: the user has ${user.role ? `role "${user.role}"` : "no role"}`);
}

/** All users with their role ("" for none), by user id. */
async function listUsers(ctx: Ctx): Promise<{ user_id: string; role: string }[]> {
  const { users, roles } = ctx.tables;
  const rows = await ctx.db.select({ user_id: users.userId, role: roles.name }).from(users).leftJoin(roles, eq(roles.id, users.roleId)).orderBy(asc(users.userId));
  return rows.map((r) => ({ user_id: r.user_id, role: r.role ?? "" }));
}

/** A user's role ("" for none); an unknown user is recorded without a role. `created` tells which. */
async function roleForUser(ctx: Ctx, input: UserIdInput): Promise<{ role: string; created: boolean }> {
  const { users } = ctx.tables;
  // The usual case, a known user, is one read, of a statement prepared once per registry.
  const read = () =>
    firstRow(
      prepareOnce(ctx, "role_for_user", () => {
        const { roles } = ctx.tables;
        return ctx.db
          .select({ role: roles.name })
          .from(users)
          .leftJoin(roles, eq(roles.id, users.roleId))
          .where(eq(users.userId, sql.placeholder("userId")))
          .limit(1);
      }),
      { userId: input.user_id },
    );
  const known = await read();
  if (known) return { role: known.role ?? "", created: false };
  const inserted = await ctx.db.insert(users).values({ userId: input.user_id }).onConflictDoNothing().returning({ id: users.id });
  if (inserted.length > 0) return { role: "", created: true };
  // Another request recorded the user in between (possibly with a role).
  const raced = await read();
  return { role: raced?.role ?? "", created: false };
}

/** Records a user; with a role name it also gives it that role (which must exist: nothing is written otherwise). */
async function registerUser(ctx: Ctx, input: RegisterUserInput): Promise<void> {
  const { users } = ctx.tables;
  if (input.role_name) return assignRoleToUser(ctx, { user_id: input.user_id, role_name: input.role_name });
  await ctx.db.insert(users).values({ userId: input.user_id }).onConflictDoNothing();
}

const PairList = v.object({ users: v.array(v.tuple([v.string(), v.string()])) });

const tools = [
  defineTool({
    name: "assign_role_to_user",
    title: "Assign role to user",
    description: "Give a user a role, replacing the role it had (a user has at most one). An unknown user is created.",
    input: UserRoleInput,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      await assignRoleToUser(ctx, input);
      return { text: `Role "${input.role_name}" assigned to user "${input.user_id}".` };
    },
  }),
  defineTool({
    name: "remove_role_from_user",
    title: "Remove role from user",
    description: "Take a role away from a user; fails when the user does not have that role.",
    input: UserRoleInput,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
    async run(ctx, input) {
      await removeRoleFromUser(ctx, input);
      return { text: `Role "${input.role_name}" removed from user "${input.user_id}".` };
    },
  }),
  defineTool({
    name: "list_users",
    title: "List users",
    description: 'List users as [user_id, role] pairs (role "" when the user has none).',
    input: v.object({}),
    output: PairList,
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx) {
      const pairs = (await listUsers(ctx)).map((u): [string, string] => [u.user_id, u.role]);
      return { text: JSON.stringify(pairs), data: { users: pairs } };
    },
  }),
];

/** POST /role_for_user, POST /register_user and GET /list_users, in the predecessor's shapes. */
const routes = new Hono<AppEnv>()
  .post("/role_for_user", async (c) => {
    const ctx = c.get("ctx");
    const input = await readInput(c, UserIdInput, "get role for user");
    const { role, created } = await roleForUser(ctx, input);
    if (created) await recordAudit(ctx, { caller: c.get("caller"), action: "role_for_user", target: auditTarget(input), outcome: "ok", detail: "user recorded" });
    return c.json({ role });
  })
  .post("/register_user", async (c) => {
    const ctx = c.get("ctx");
    // Audited like a tool call, whether it succeeds or not (an unreadable body too).
    await audited(ctx, { caller: c.get("caller"), action: "register_user", target: "" }, async (pending) => {
      const input = await readInput(c, RegisterUserInput, "register user");
      pending.entry.target = auditTarget(input);
      await registerUser(ctx, input);
    });
    return c.json({ status: "user registered" });
  })
  .get("/list_users", async (c) => {
    const list = await listUsers(c.get("ctx"));
    return c.json({ users: list.map((user) => ({ user })) });
  });

/** Users: tools and routes. */
export const users: Feature = { name: "users", tools, routes };
