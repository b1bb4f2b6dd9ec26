/** Import from the predecessor (Python) registry: its SQLite tables into the current store, idempotently. */
import { copyFileSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { createClient } from "@libsql/client";
import { and, eq, inArray } from "drizzle-orm";
import type { Ctx } from "../../shared/context.ts";
import { syncIdSequence } from "../../shared/db/db.ts";
import { AppError } from "../../shared/errors.ts";
import { sealUserToken } from "../credentials/credentials.ts";
import { endpointSpellings, normalizeEndpoint } from "../services/endpoint.ts";
import { digestOf } from "../tool_pinning/definition.ts";

type OldService = { id: number; service_name: string; endpoint: string; description: string; requires_authorization: number; method_authorization: string };
type OldTool = { id: number; service_name: string; name: string; description: string };
type OldRole = { id: number; name: string; default_system_prompt: string };
type OldToolRole = { tool_id: number; role_id: number };
type OldUser = { id: number; user_id: string; role_id_fk: number | null };
type OldToken = { user_id_fk: number; service_name: string; token: string };

const TABLES = ["mcp_services", "mcp_tools", "mcp_roles", "mcp_tool_roles", "mcp_users", "user_access_tokens"] as const;

/** What an import did: counts per kind, and each skipped row with its reason. */
export type ImportReport = {
  source: string;
  imported: Record<"services" | "tools" | "roles" | "attachments" | "users" | "tokens", number>;
  skipped: string[];
};

/** Maps the predecessor's DATABASE_URL (sqlite:///./dev.db, sqlite+aiosqlite:///..., file:..., a path) to a file path. */
export function legacyDatabasePath(url: string): string {
  const scheme = /^([a-z][\w+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme && !scheme.startsWith("sqlite")) {
    throw new AppError(
      "invalid_input",
      `Cannot import from "${scheme}": only the predecessor's SQLite database can be imported (sqlite:///path/to/dev.db); copy a MySQL database to SQLite first`,
    );
  }
  const path = url.replace(/^sqlite(\+aiosqlite)?:\/\/\//i, "").replace(/^file:/, "");
  if (!path || path === ":memory:") throw new AppError("invalid_input", `Cannot import from "${url}": name the predecessor's SQLite file`);
  if (!existsSync(path)) throw new AppError("not_found", `Cannot import from "${url}": no file at ${resolve(path)}`);
  return resolve(path);
}

/**
 * Reads the predecessor's tables from a copy of its SQLite file (the original is never opened for
 * writing) and writes what is missing here. Rows already present are left alone, so a second run
 * changes nothing.
 */
export async function importLegacy(ctx: Ctx, oldUrl: string): Promise<ImportReport> {
  const path = legacyDatabasePath(oldUrl);
  const old = await readLegacy(path);
  const report: ImportReport = { source: path, imported: { services: 0, tools: 0, roles: 0, attachments: 0, users: 0, tokens: 0 }, skipped: [] };
  const run: Run = { ctx, old, report, skip: (what, why) => report.skipped.push(`${what}: ${why}`) };
  const notImported = await importServices(run);
  const importedTools = await importTools(run, notImported);
  const roleNames = await importRoles(run, importedTools);
  await importUsers(run, roleNames);
  await importTokens(run);
  return report;
}

type Legacy = Awaited<ReturnType<typeof readLegacy>>;
// One import under way: where to write, what was read, what it reports.
type Run = { ctx: Ctx; old: Legacy; report: ImportReport; skip(what: string, why: string): void };

// Services not here yet, their endpoints normalized; returns the names of those skipped for their endpoint.
async function importServices({ ctx, old, report, skip }: Run): Promise<Set<string>> {
  const t = ctx.tables;
  const notImported = new Set<string>();
  for (const raw of old.services) {
    // The predecessor ran a local path as a subprocess; agents here can only use http(s) URLs.
    let endpoint: string;
    try {
      endpoint = normalizeEndpoint(raw.endpoint);
    } catch (err) {
      notImported.add(raw.service_name);
      skip(
        `service "${raw.service_name}"`,
        `its endpoint "${raw.endpoint}" ${(err as Error).message} (agents cannot call a local path or command); add it again with add_service at an http(s) URL`,
      );
      continue;
    }
    const s = { ...raw, endpoint };
    const [byName] = await ctx.db.select().from(t.services).where(eq(t.services.name, s.service_name)).limit(1);
    if (byName) {
      if (byName.endpoint !== s.endpoint) skip(`service "${s.service_name}"`, `a service of that name already exists here with endpoint "${byName.endpoint}"`);
      continue;
    }
    const [byEndpoint] = await ctx.db
      .select({ name: t.services.name })
      .from(t.services)
      .where(inArray(t.services.endpoint, endpointSpellings(s.endpoint)))
      .limit(1);
    if (byEndpoint) {
      skip(`service "${s.service_name}"`, `service "${byEndpoint.name}" already uses endpoint "${s.endpoint}"`);
      continue;
    }
    const requires = Boolean(s.requires_authorization);
    await ctx.db
      .insert(t.services)
      .values({
        name: s.service_name,
        endpoint: s.endpoint,
        description: s.description ?? "",
        // The predecessor kept no transport; it spoke SSE to endpoints ending in /sse.
        transport: /\/sse\/?$/.test(new URL(s.endpoint, "http://x").pathname) ? "sse" : "streamable_http",
        requiresAuthorization: requires,
        methodAuthorization: requires ? (s.method_authorization ?? "") : "",
      })
      .onConflictDoNothing();
    report.imported.services++;
  }
  return notImported;
}

// Tools with their old ids (never reused here); returns the ids now present for their service.
async function importTools({ ctx, old, report, skip }: Run, notImported: Set<string>): Promise<Set<number>> {
  const t = ctx.tables;
  const serviceIds = new Map((await ctx.db.select({ id: t.services.id, name: t.services.name }).from(t.services)).map((s) => [s.name, s.id]));
  const oldServiceNames = new Set(old.services.map((s) => s.service_name));
  const importedTools = new Set<number>();
  for (const tool of old.tools) {
    const what = `tool ${tool.id} "${tool.name}" of service "${tool.service_name}"`;
    const serviceId = serviceIds.get(tool.service_name);
    if (!oldServiceNames.has(tool.service_name) || serviceId === undefined) {
      skip(what, notImported.has(tool.service_name) ? "its service was not imported" : "its service no longer exists");
      continue;
    }
    const [sameId] = await ctx.db.select({ serviceId: t.tools.serviceId, name: t.tools.name }).from(t.tools).where(eq(t.tools.id, tool.id)).limit(1);
    if (sameId) {
      if (sameId.serviceId === serviceId && sameId.name === tool.name) importedTools.add(tool.id);
      else skip(what, `id ${tool.id} is already used here by another tool`);
      continue;
    }
    const [sameName] = await ctx.db
      .select({ id: t.tools.id })
      .from(t.tools)
      .where(and(eq(t.tools.serviceId, serviceId), eq(t.tools.name, tool.name)))
      .limit(1);
    if (sameName) {
      skip(what, `the service already has a tool of that name here (id ${sameName.id})`);
      continue;
    }
    // With the digest of its definition (the approved one, features/tool_pinning): start-up has none to compute.
    const definition = { name: tool.name, title: null, description: tool.description ?? "", inputSchema: null, outputSchema: null, annotations: null };
    await ctx.db.insert(t.tools).values({ id: tool.id, serviceId, ...definition, digest: digestOf(definition) });
    importedTools.add(tool.id);
    report.imported.tools++;
  }
  await syncIdSequence(ctx, "tools");
  return importedTools;
}

// Roles, then their attachments to imported tools; returns the old role ids' names with their ids here.
async function importRoles({ ctx, old, report, skip }: Run, importedTools: Set<number>): Promise<RoleNames> {
  const t = ctx.tables;
  for (const r of old.roles) {
    const inserted = await ctx.db
      .insert(t.roles)
      .values({ name: r.name, defaultSystemPrompt: r.default_system_prompt ?? "" })
      .onConflictDoNothing()
      .returning({ id: t.roles.id });
    report.imported.roles += inserted.length;
  }
  const ids = new Map((await ctx.db.select({ id: t.roles.id, name: t.roles.name }).from(t.roles)).map((r) => [r.name, r.id]));
  const names = new Map(old.roles.map((r) => [r.id, r.name]));
  for (const a of old.toolRoles) {
    const roleName = names.get(a.role_id);
    const roleId = roleName === undefined ? undefined : ids.get(roleName);
    if (!importedTools.has(a.tool_id) || roleId === undefined) {
      skip(`attachment of tool ${a.tool_id} to role ${roleName ? `"${roleName}"` : a.role_id}`, roleId === undefined ? "the role no longer exists" : "the tool was not imported");
      continue;
    }
    const inserted = await ctx.db.insert(t.toolRoles).values({ toolId: a.tool_id, roleId }).onConflictDoNothing().returning({ toolId: t.toolRoles.toolId });
    report.imported.attachments += inserted.length;
  }
  return { names, ids };
}
type RoleNames = { names: Map<number, string>; ids: Map<string, number> };

async function importUsers({ ctx, old, report, skip }: Run, roles: RoleNames): Promise<void> {
  const t = ctx.tables;
  for (const u of old.users) {
    const roleName = u.role_id_fk === null ? undefined : roles.names.get(u.role_id_fk);
    if (u.role_id_fk !== null && roleName === undefined) skip(`role of user "${u.user_id}"`, `role ${u.role_id_fk} no longer exists; the user is imported without a role`);
    const inserted = await ctx.db
      .insert(t.users)
      .values({ userId: u.user_id, roleId: roleName === undefined ? null : (roles.ids.get(roleName) ?? null) })
      .onConflictDoNothing()
      .returning({ id: t.users.id });
    report.imported.users += inserted.length;
  }
}

// Tokens, encrypted for their row here; a token already stored here is kept.
async function importTokens({ ctx, old, report, skip }: Run): Promise<void> {
  const t = ctx.tables;
  const oldServiceNames = new Set(old.services.map((s) => s.service_name));
  const oldUserIds = new Map(old.users.map((u) => [u.id, u.user_id]));
  const services = new Map(
    (await ctx.db.select({ id: t.services.id, name: t.services.name, requires: t.services.requiresAuthorization }).from(t.services)).map((s) => [s.name, s]),
  );
  for (const tok of old.tokens) {
    const userId = oldUserIds.get(tok.user_id_fk);
    const what = `token of user ${userId ? `"${userId}"` : `#${tok.user_id_fk}`} for service "${tok.service_name}"`;
    const service = services.get(tok.service_name);
    if (!userId) skip(what, "the user no longer exists");
    else if (!oldServiceNames.has(tok.service_name) || !service) skip(what, "the service no longer exists");
    else if (!service.requires) skip(what, "the service does not require authorization");
    else if (await sealUserToken(ctx, service.id, userId, tok.token, { replace: false })) report.imported.tokens++;
  }
}

async function readLegacy(path: string) {
  // Work on a copy, so the predecessor's file (and its WAL) is never touched.
  const dir = mkdtempSync(join(tmpdir(), "mcp-registry-import-"));
  try {
    const copy = join(dir, basename(path));
    for (const suffix of ["", "-wal", "-shm"]) if (existsSync(path + suffix)) copyFileSync(path + suffix, copy + suffix);
    const client = createClient({ url: `file:${copy}` });
    try {
      const present = new Set((await client.execute("select name from sqlite_master where type = 'table'")).rows.map((r) => String(r.name)));
      const missing = TABLES.filter((name) => !present.has(name));
      if (missing.length) throw new AppError("invalid_input", `Cannot import from ${path}: it is not the predecessor's database (missing tables: ${missing.join(", ")})`);
      const rows = async <T>(query: string) => (await client.execute(query)).rows as unknown as T[];
      return {
        services: await rows<OldService>("select id, service_name, endpoint, description, requires_authorization, method_authorization from mcp_services order by id"),
        tools: await rows<OldTool>("select id, service_name, name, description from mcp_tools order by id"),
        roles: await rows<OldRole>("select id, name, default_system_prompt from mcp_roles order by id"),
        toolRoles: await rows<OldToolRole>("select tool_id, role_id from mcp_tool_roles order by id"),
        users: await rows<OldUser>("select id, user_id, role_id_fk from mcp_users order by id"),
        tokens: await rows<OldToken>("select user_id_fk, service_name, token from user_access_tokens order by id"),
      };
    } finally {
      client.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The report as the lines `npm run import` prints. */
export function formatImportReport(r: ImportReport): string {
  const n = r.imported;
  return [
    `Imported from ${r.source}:`,
    `  services: ${n.services}`,
    `  tools: ${n.tools}${n.tools ? " (their input schemas are not stored until the service is refreshed: remove and add it again, or run refresh_service)" : ""}`,
    `  roles: ${n.roles}`,
    `  role attachments: ${n.attachments}`,
    `  users: ${n.users}`,
    `  tokens: ${n.tokens} (encrypted)`,
    r.skipped.length ? `Skipped ${r.skipped.length}:` : "Skipped: nothing",
    ...r.skipped.map((s) => `  - ${s}`),
  ].join("\n");
}
