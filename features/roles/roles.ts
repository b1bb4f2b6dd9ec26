/** Roles: create and remove roles, their system prompts, and which tools each role may use. */
import { and, asc, eq, sql } from "drizzle-orm";
import { Hono } from "hono";
import * as v from "valibot";
import { fromCatalogue } from "../../shared/db/answers.ts";
import { type Ctx, firstRow, jsonRows, prepareOnce } from "../../shared/context.ts";
import { isUniqueViolation } from "../../shared/db/db.ts";
import { AppError } from "../../shared/errors.ts";
import { type AppEnv, readInput } from "../../shared/http.ts";
import type { Feature } from "../../shared/feature.ts";
import { RoleName, RoleNameOrNone, ToolId } from "../../shared/names.ts";
import { defineTool } from "../../shared/mcp.ts";

/** Largest default system prompt a role may have, in characters. */
const MAX_PROMPT_LENGTH = 8192;

const SystemPrompt = v.pipe(v.string("must be a string"), v.maxLength(MAX_PROMPT_LENGTH, `must be at most ${MAX_PROMPT_LENGTH} characters`));

const CreateRoleInput = v.object({ role_name: RoleName, default_system_prompt: v.optional(SystemPrompt, "") });
type CreateRoleInput = v.InferOutput<typeof CreateRoleInput>;

const RoleNameInput = v.object({ role_name: RoleName });
type RoleNameInput = v.InferOutput<typeof RoleNameInput>;

const SetPromptInput = v.object({ role_name: RoleName, default_system_prompt: SystemPrompt });
type SetPromptInput = v.InferOutput<typeof SetPromptInput>;

const ToolRoleInput = v.object({ tool_id: ToolId, role_name: RoleName });
type ToolRoleInput = v.InferOutput<typeof ToolRoleInput>;

/** Body of POST /tools_for_role: the role must be named. */
export const ToolsForRoleInput = v.object({ role: RoleName });
type ToolsForRoleInput = v.InferOutput<typeof ToolsForRoleInput>;

/** Body of POST /system_prompt_for_role: "" (a user without a role) is allowed and has the prompt "". */
export const PromptForRoleInput = v.object({ role: RoleNameOrNone });
type PromptForRoleInput = v.InferOutput<typeof PromptForRoleInput>;

const RoleRow = v.object({ name: v.string(), default_system_prompt: v.string() });

/** Creates a role; a taken name is a conflict. */
async function createRole(ctx: Ctx, input: CreateRoleInput): Promise<void> {
  const { roles } = ctx.tables;
  try {
    await ctx.db.insert(roles).values({ name: input.role_name, defaultSystemPrompt: input.default_system_prompt });
  } catch (err) {
    if (isUniqueViolation(err)) throw new AppError("conflict", `Cannot create role "${input.role_name}": a role with that name already exists`);
    throw err;
  }
}

/** Removes a role; foreign keys detach it from its tools and clear it from its users. */
async function removeRole(ctx: Ctx, input: RoleNameInput): Promise<void> {
  const { roles } = ctx.tables;
  const deleted = await ctx.db.delete(roles).where(eq(roles.name, input.role_name)).returning({ id: roles.id });
  if (deleted.length === 0) throw new AppError("not_found", `Cannot remove role "${input.role_name}": no such role`);
}

/** All roles with their default system prompt, by name. */
async function listRoles(ctx: Ctx): Promise<{ name: string; default_system_prompt: string }[]> {
  const { roles } = ctx.tables;
  return ctx.db.select({ name: roles.name, default_system_prompt: roles.defaultSystemPrompt }).from(roles).orderBy(asc(roles.name));
}

/** Replaces a role's default system prompt. */
async function setRoleSystemPrompt(ctx: Ctx, input: SetPromptInput): Promise<void> {
  const { roles } = ctx.tables;
  const updated = await ctx.db.update(roles).set({ defaultSystemPrompt: input.default_system_prompt }).where(eq(roles.name, input.role_name)).returning({ id: roles.id });
  if (updated.length === 0) throw new AppError("not_found", `Cannot set the system prompt of role "${input.role_name}": no such role`);
}

type Link = { roleId: number; toolId: number; label: string };

// The role and the tool a link is about, or not_found naming the missing one.
async function findLink(ctx: Ctx, input: ToolRoleInput, action: string): Promise<Link> {
  const { roles, tools, services } = ctx.tables;
  const [[role], [tool]] = await Promise.all([
    ctx.db.select({ id: roles.id }).from(roles).where(eq(roles.name, input.role_name)).limit(1),
    ctx.db
      .select({ id: tools.id, name: tools.name, service: services.name })
      .from(tools)
      .innerJoin(services, eq(services.id, tools.serviceId))
      .where(eq(tools.id, input.tool_id))
      .limit(1),
  ]);
  if (!role) throw new AppError("not_found", `Cannot ${action}: no such role`);
  if (!tool) throw new AppError("not_found", `Cannot ${action}: no such tool`);
  // Tool names repeat across services, so the service is named too.
  return { roleId: role.id, toolId: tool.id, label: `tool ${tool.id} ("${tool.name}" of service "${tool.service}")` };
}

/** Lets a role use a tool; true when it was attached now, false when it already was. */
async function attachRoleToTool(ctx: Ctx, input: ToolRoleInput): Promise<{ attached: boolean; label: string }> {
  const { toolRoles } = ctx.tables;
  const action = `attach role "${input.role_name}" to tool ${input.tool_id}`;
  const link = await findLink(ctx, input, action);
  try {
    const inserted = await ctx.db.insert(toolRoles).values({ toolId: link.toolId, roleId: link.roleId }).onConflictDoNothing().returning({ toolId: toolRoles.toolId });
    return { attached: inserted.length > 0, label: link.label };
  } catch (err) {
    // The role or the tool was removed meanwhile (foreign key): report which one.
    await findLink(ctx, input, action);
    throw err;
  }
}

/** Stops a role from using a tool; true when it was detached now, false when it was not attached. */
async function detachRoleFromTool(ctx: Ctx, input: ToolRoleInput): Promise<{ detached: boolean; label: string }> {
  const { toolRoles } = ctx.tables;
  const link = await findLink(ctx, input, `detach role "${input.role_name}" from tool ${input.tool_id}`);
  const deleted = await ctx.db
    .delete(toolRoles)
    .where(and(eq(toolRoles.toolId, link.toolId), eq(toolRoles.roleId, link.roleId)))
    .returning({ toolId: toolRoles.toolId });
  return { detached: deleted.length > 0, label: link.label };
}

const encoder = new TextEncoder();

/**
 * The body of POST /tools_for_role: `{"tools":[...]}` with the tools explicitly attached to a role (none
 * for an unknown role), by service name then tool id, each {id, name, description, service_name}, as
 * UTF-8 bytes. Agents ask before each message and a role may have hundreds of tools, so the database
 * builds the JSON text (jsonRows), and the body is encoded once and kept while the catalogue is unchanged
 * (shared/catalogue.ts): the 200-row join and encoding 31 KB cost more than the rest of the request.
 */
async function toolsForRoleBody(ctx: Ctx, input: ToolsForRoleInput): Promise<Uint8Array<ArrayBuffer>> {
  return fromCatalogue(
    ctx,
    `tools_for_role ${input.role}`,
    async () => {
      const { roles, tools, toolRoles, services } = ctx.tables;
      const fields = { id: tools.id, name: tools.name, description: tools.description, service_name: services.name };
      const json = await jsonRows(
        ctx,
        "tools_for_role",
        fields,
        sql`${services.name}, ${tools.id}`,
        (selected) =>
          ctx.db
            .select(selected)
            .from(toolRoles)
            .innerJoin(roles, eq(roles.id, toolRoles.roleId))
            .innerJoin(tools, eq(tools.id, toolRoles.toolId))
            .innerJoin(services, eq(services.id, tools.serviceId))
            // A tool held for review (features/tool_pinning) is not offered until its change is approved.
            .where(and(eq(roles.name, sql.placeholder("role")), eq(tools.held, false))),
        { role: input.role },
      );
      return encoder.encode(`{"tools":${json}}`);
    },
    (body) => body.byteLength,
  );
}

/** A role's default system prompt; "" for no role or an unknown one. */
async function systemPromptForRole(ctx: Ctx, input: PromptForRoleInput): Promise<string> {
  if (input.role === "") return "";
  const row = await firstRow(
    prepareOnce(ctx, "system_prompt_for_role", () => {
      const { roles } = ctx.tables;
      return ctx.db
        .select({ prompt: roles.defaultSystemPrompt })
        .from(roles)
        .where(eq(roles.name, sql.placeholder("role")))
        .limit(1);
    }),
    { role: input.role },
  );
  return row?.prompt ?? "";
}

const tools = [
  defineTool({
    name: "create_role",
    title: "Create role",
    description: `Create a role, optionally with the default system prompt agents use for its users (at most ${MAX_PROMPT_LENGTH} characters).`,
    input: CreateRoleInput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
    async run(ctx, input) {
      await createRole(ctx, input);
      return { text: `Role "${input.role_name}" created.` };
    },
  }),
  defineTool({
    name: "remove_role",
    title: "Remove role",
    description: "Remove a role: it is detached from every tool and cleared from every user who had it.",
    input: RoleNameInput,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
    async run(ctx, input) {
      await removeRole(ctx, input);
      return { text: `Role "${input.role_name}" removed.` };
    },
  }),
  defineTool({
    name: "list_roles",
    title: "List roles",
    description: "List roles with their default system prompt.",
    input: v.object({}),
    output: v.object({ roles: v.array(RoleRow) }),
    annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx) {
      const list = await listRoles(ctx);
      return { text: JSON.stringify(list), data: { roles: list } };
    },
  }),
  defineTool({
    name: "set_role_system_prompt",
    title: "Set role system prompt",
    description: `Replace the default system prompt of a role (at most ${MAX_PROMPT_LENGTH} characters; "" clears it).`,
    input: SetPromptInput,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      await setRoleSystemPrompt(ctx, input);
      return { text: `System prompt of role "${input.role_name}" set.` };
    },
  }),
  defineTool({
    name: "attach_role_to_tool",
    title: "Attach role to tool",
    description: "Let a role use a tool. tool_id is the id get_tools shows (tool names repeat across services, ids do not).",
    input: ToolRoleInput,
    annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      const { attached, label } = await attachRoleToTool(ctx, input);
      return { text: attached ? `Role "${input.role_name}" attached to ${label}.` : `Role "${input.role_name}" already attached to ${label}.` };
    },
  }),
  defineTool({
    name: "detach_role_from_tool",
    title: "Detach role from tool",
    description: "Stop a role from using a tool (tool_id as get_tools shows it).",
    input: ToolRoleInput,
    annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: true, openWorldHint: false },
    async run(ctx, input) {
      const { detached, label } = await detachRoleFromTool(ctx, input);
      return { text: detached ? `Role "${input.role_name}" detached from ${label}.` : `Role "${input.role_name}" was not attached to ${label}.` };
    },
  }),
];

/** POST /tools_for_role and POST /system_prompt_for_role, the agent's per-message reads. */
const routes = new Hono<AppEnv>()
  .post("/tools_for_role", async (c) => {
    const input = await readInput(c, ToolsForRoleInput, "get tools for role");
    return c.body(await toolsForRoleBody(c.get("ctx"), input), 200, { "content-type": "application/json" });
  })
  .post("/system_prompt_for_role", async (c) => {
    const input = await readInput(c, PromptForRoleInput, "get system prompt for role");
    return c.json({ default_system_prompt: await systemPromptForRole(c.get("ctx"), input) });
  });

/** Roles: tools and routes. */
export const roles: Feature = { name: "roles", tools, routes };
