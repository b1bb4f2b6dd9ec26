/**
 * get_tools and /tools_for_role keep their answers while the catalogue generation is unchanged.
 * Every change to services, tools, roles or tool_roles (through any tool, a refresh, another registry on
 * the same database, or SQL the registry never saw) must show in the very next answer.
 */
import { join } from "node:path";
import { ListToolsRequestSchema, type Tool } from "@modelcontextprotocol/sdk/types.js";
import { eq } from "drizzle-orm";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { catalogueGeneration } from "../shared/db/answers.ts";
import { call, ENGINE, freshDatabase, startTestMcpServer, startTestRegistry, tempDir, type TestRegistry, text } from "./helpers.ts";

// This file is about how a discovered difference is applied: changes are served at once (policy accept).
// Holding a changed tool until an admin approves it, the default, is test/tool_pinning.test.ts.
const APPLY_AT_ONCE = { REGISTRY_TOOL_CHANGES: "accept" };

type Served = { tools: Tool[] };

function tool(name: string, description: string): Tool {
  return { name, description, inputSchema: { type: "object" } };
}

// A test server whose tool list the test changes between discoveries.
async function changingServer(served: Served) {
  return startTestMcpServer({ setup: (s) => s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: served.tools })) });
}

async function toolsForRole(reg: TestRegistry, role: string): Promise<{ id: number; name: string; description: string; service_name: string }[]> {
  const res = await reg.http("/tools_for_role", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ role }) });
  expect(res.status).toBe(200);
  return (await res.json()).tools;
}

async function listServices(reg: TestRegistry): Promise<Record<string, { transport: string; url: string }>> {
  const res = await reg.http("/list_services");
  expect(res.status).toBe(200);
  return (await res.json()).services;
}

async function getTools(reg: TestRegistry, service: string): Promise<{ id: number; name: string; description: string; roles: string[] }[]> {
  const result = await call(await reg.client(), "get_tools", { service_name: service });
  expect(result.isError, text(result)).toBeFalsy();
  const list = (result.structuredContent as { tools: { id: number; name: string; description: string; roles: string[] }[] }).tools;
  expect(JSON.parse(text(result))).toEqual(list);
  return list;
}

async function admin(reg: TestRegistry, name: string, args: Record<string, unknown>): Promise<string> {
  const result = await call(await reg.client(), name, args);
  expect(result.isError, text(result)).toBeFalsy();
  return text(result);
}

const KEPT_BYTES = 65_536;

describe("answers kept per catalogue generation follow every change (every engine)", () => {
  let reg: TestRegistry;
  let server: Awaited<ReturnType<typeof changingServer>>;
  const served: Served = { tools: [] };
  let ids: Record<string, number>;

  beforeEach(async () => {
    served.tools = [tool("alpha", "Alpha v1"), tool("beta", "Beta v1")];
    server = await changingServer(served);
    // The smallest bound on kept answers: a few hundred, so a test can cross it.
    reg = await startTestRegistry({ ...APPLY_AT_ONCE, REGISTRY_REFRESH_INTERVAL: "0", REGISTRY_KEPT_ANSWERS_BYTES: String(KEPT_BYTES) });
    await admin(reg, "add_service", { service_name: "svc", endpoint: server.url, description: "A service" });
    await admin(reg, "create_role", { role_name: "analyst" });
    ids = Object.fromEntries((await getTools(reg, "svc")).map((t) => [t.name, t.id]));
  });
  afterEach(async () => {
    await reg.stop();
    await server.stop();
  });

  it("attach, detach and remove_role show in the next answer of both", async () => {
    expect(await toolsForRole(reg, "analyst")).toEqual([]);
    expect((await getTools(reg, "svc")).map((t) => t.roles)).toEqual([[], []]);

    await admin(reg, "attach_role_to_tool", { tool_id: ids.alpha, role_name: "analyst" });
    expect(await toolsForRole(reg, "analyst")).toEqual([{ id: ids.alpha, name: "alpha", description: "Alpha v1", service_name: "svc" }]);
    expect((await getTools(reg, "svc")).map((t) => t.roles)).toEqual([["analyst"], []]);

    await admin(reg, "attach_role_to_tool", { tool_id: ids.beta, role_name: "analyst" });
    await admin(reg, "detach_role_from_tool", { tool_id: ids.alpha, role_name: "analyst" });
    expect((await toolsForRole(reg, "analyst")).map((t) => t.name)).toEqual(["beta"]);
    expect((await getTools(reg, "svc")).map((t) => t.roles)).toEqual([[], ["analyst"]]);

    await admin(reg, "remove_role", { role_name: "analyst" });
    expect(await toolsForRole(reg, "analyst")).toEqual([]);
    expect((await getTools(reg, "svc")).map((t) => t.roles)).toEqual([[], []]);

    // A new role of the same name starts with no tools, though the name was answered before.
    await admin(reg, "create_role", { role_name: "analyst" });
    expect(await toolsForRole(reg, "analyst")).toEqual([]);
  });

  it("a refresh that changes, adds and drops tools shows in the next answer of both", async () => {
    await admin(reg, "attach_role_to_tool", { tool_id: ids.alpha, role_name: "analyst" });
    await admin(reg, "attach_role_to_tool", { tool_id: ids.beta, role_name: "analyst" });
    expect((await toolsForRole(reg, "analyst")).map((t) => t.description)).toEqual(["Alpha v1", "Beta v1"]);

    served.tools = [tool("alpha", "Alpha v2"), tool("gamma", "Gamma v1")];
    await admin(reg, "refresh_service", { service_name: "svc" });
    expect(await toolsForRole(reg, "analyst")).toEqual([{ id: ids.alpha, name: "alpha", description: "Alpha v2", service_name: "svc" }]);
    const after = await getTools(reg, "svc");
    expect(after.map((t) => [t.name, t.description, t.roles])).toEqual([
      ["alpha", "Alpha v2", ["analyst"]],
      ["gamma", "Gamma v1", []],
    ]);
  });

  it("remove_service empties the role's tools and get_tools reports the service gone", async () => {
    await admin(reg, "attach_role_to_tool", { tool_id: ids.alpha, role_name: "analyst" });
    expect(await toolsForRole(reg, "analyst")).toHaveLength(1);
    await getTools(reg, "svc");

    await admin(reg, "remove_service", { service_name: "svc" });
    expect(await toolsForRole(reg, "analyst")).toEqual([]);
    const gone = await call(await reg.client(), "get_tools", { service_name: "svc" });
    expect(gone.isError).toBe(true);
    expect(text(gone)).toBe('Cannot get tools of service "svc": no such service');

    // Added again under the same name: new tool ids, no attachment revived.
    await admin(reg, "add_service", { service_name: "svc", endpoint: server.url, description: "Again" });
    const again = await getTools(reg, "svc");
    expect(again.map((t) => t.roles)).toEqual([[], []]);
    expect(again.map((t) => t.id).some((id) => Object.values(ids).includes(id))).toBe(false);
  });

  it("a change the registry did not make (plain SQL on its tables) shows in the next answer", async () => {
    await admin(reg, "attach_role_to_tool", { tool_id: ids.alpha, role_name: "analyst" });
    expect((await toolsForRole(reg, "analyst"))[0].description).toBe("Alpha v1");
    expect((await getTools(reg, "svc"))[0].description).toBe("Alpha v1");

    const { tools, services } = reg.ctx.tables;
    await reg.ctx.db.update(tools).set({ description: "Edited by hand" }).where(eq(tools.id, ids.alpha));
    expect((await toolsForRole(reg, "analyst"))[0].description).toBe("Edited by hand");
    expect((await getTools(reg, "svc"))[0].description).toBe("Edited by hand");

    // /list_services too: its endpoint and transport changed by hand show at once.
    expect(await listServices(reg)).toEqual({ svc: { transport: "streamable_http", url: server.url } });
    await reg.ctx.db.update(services).set({ endpoint: "http://127.0.0.1:1/moved", transport: "sse" }).where(eq(services.name, "svc"));
    expect(await listServices(reg)).toEqual({ svc: { transport: "sse", url: "http://127.0.0.1:1/moved" } });

    await reg.ctx.db.update(services).set({ name: "renamed" }).where(eq(services.name, "svc"));
    expect((await toolsForRole(reg, "analyst"))[0].service_name).toBe("renamed");
    expect((await call(await reg.client(), "get_tools", { service_name: "svc" })).isError).toBe(true);
    expect(Object.keys(await listServices(reg))).toEqual(["renamed"]);
  });

  it("without its catalogue_state row (deleted by hand) nothing is kept, and every answer is current", async () => {
    await admin(reg, "attach_role_to_tool", { tool_id: ids.alpha, role_name: "analyst" });
    expect((await toolsForRole(reg, "analyst")).map((t) => t.name)).toEqual(["alpha"]);
    await reg.ctx.db.delete(reg.ctx.tables.catalogueState);
    expect(await catalogueGeneration(reg.ctx)).toBeNull();
    expect((await toolsForRole(reg, "analyst")).map((t) => t.name)).toEqual(["alpha"]);
    await admin(reg, "attach_role_to_tool", { tool_id: ids.beta, role_name: "analyst" });
    expect((await toolsForRole(reg, "analyst")).map((t) => t.name)).toEqual(["alpha", "beta"]);
    expect((await getTools(reg, "svc")).map((t) => t.roles)).toEqual([["analyst"], ["analyst"]]);
  });

  it("changes that do not touch these answers leave the generation alone; catalogue changes raise it", async () => {
    const start = (await catalogueGeneration(reg.ctx))!;
    expect(start).toBeTypeOf("number");
    await admin(reg, "set_role_system_prompt", { role_name: "analyst", default_system_prompt: "Be brief." });
    await admin(reg, "assign_role_to_user", { user_id: "ann", role_name: "analyst" });
    await admin(reg, "update_service", { service_name: "svc", description: "New description" });
    // A refresh that finds nothing new only records the service's health (it writes the same transport back).
    await admin(reg, "refresh_service", { service_name: "svc" });
    await listServices(reg);
    expect(await catalogueGeneration(reg.ctx)).toBe(start);
    // A new endpoint is a catalogue change: /list_services shows it.
    const moved = await changingServer(served);
    await admin(reg, "update_service", { service_name: "svc", endpoint: moved.url });
    const afterMove = (await catalogueGeneration(reg.ctx))!;
    expect(afterMove).toBeGreaterThan(start);
    expect((await listServices(reg)).svc.url).toBe(moved.url);
    await moved.stop();

    await admin(reg, "attach_role_to_tool", { tool_id: ids.beta, role_name: "analyst" });
    const attached = (await catalogueGeneration(reg.ctx))!;
    expect(attached).toBeGreaterThan(afterMove);
    await admin(reg, "create_role", { role_name: "other" });
    expect(await catalogueGeneration(reg.ctx)).toBeGreaterThan(attached);
  });

  it("concurrent changes, with refreshes among them, all succeed and the next answer has every one", async () => {
    served.tools = Array.from({ length: 30 }, (_, i) => tool(`t${String(i).padStart(2, "0")}`, `Tool ${i}`));
    await admin(reg, "refresh_service", { service_name: "svc" });
    const all = await getTools(reg, "svc");
    expect(await toolsForRole(reg, "analyst")).toEqual([]);
    const clients = await Promise.all([0, 1, 2, 3].map(() => reg.client()));
    const results = await Promise.all([
      ...all.map((t, i) => call(clients[i % clients.length], "attach_role_to_tool", { tool_id: t.id, role_name: "analyst" })),
      ...[0, 1, 2].map(() => call(clients[0], "refresh_service", { service_name: "svc" })),
    ]);
    expect(results.filter((r) => r.isError).map(text)).toEqual([]);
    expect((await toolsForRole(reg, "analyst")).map((t) => t.id)).toEqual(all.map((t) => t.id));
    expect((await getTools(reg, "svc")).every((t) => t.roles.length === 1)).toBe(true);
  });

  it("stays right when more role names are asked than it keeps answers for", async () => {
    await admin(reg, "attach_role_to_tool", { tool_id: ids.beta, role_name: "analyst" });
    expect((await toolsForRole(reg, "analyst")).map((t) => t.name)).toEqual(["beta"]);
    for (let i = 0; i < 1050; i += 50) {
      const answers = await Promise.all(Array.from({ length: 50 }, (_, j) => toolsForRole(reg, `nobody-${i + j}`)));
      expect(answers.every((a) => a.length === 0)).toBe(true);
      // A role asked all along stays kept: past the bound the least recently used answers go, not all of them.
      expect((await toolsForRole(reg, "analyst")).map((t) => t.name)).toEqual(["beta"]);
    }
    const kept = reg.ctx.answers.answers;
    // Full to the bound, not emptied and refilled: within one answer's size of it.
    const largest = Math.max(...[...kept.values()].map((a) => a.size));
    expect(reg.ctx.answers.size).toBeLessThanOrEqual(KEPT_BYTES);
    expect(reg.ctx.answers.size).toBeGreaterThan(KEPT_BYTES - largest);
    expect(kept.size).toBeLessThan(1050);
    expect(kept.has("tools_for_role analyst")).toBe(true);
    expect(kept.has("tools_for_role nobody-0")).toBe(false);
    expect(kept.has("tools_for_role nobody-1049")).toBe(true);
    expect(reg.ctx.answers.size).toBe([...kept.values()].reduce((n, a) => n + a.size, 0));
    await admin(reg, "detach_role_from_tool", { tool_id: ids.beta, role_name: "analyst" });
    await admin(reg, "attach_role_to_tool", { tool_id: ids.alpha, role_name: "analyst" });
    expect((await toolsForRole(reg, "analyst")).map((t) => t.name)).toEqual(["alpha"]);
  });
});

describe("two registries on one database (every engine)", () => {
  it("a change made through one shows in the other's next answer", async () => {
    const served: Served = { tools: [tool("alpha", "Alpha v1")] };
    const server = await changingServer(served);
    const db = ENGINE === "postgres" ? await freshDatabase() : { url: `file:${join(tempDir(), "shared.db")}`, drop: async () => {} };
    const one = await startTestRegistry({ ...APPLY_AT_ONCE, DATABASE_URL: db.url, REGISTRY_REFRESH_INTERVAL: "0" });
    const two = await startTestRegistry({ ...APPLY_AT_ONCE, DATABASE_URL: db.url, REGISTRY_REFRESH_INTERVAL: "0" });
    try {
      await admin(one, "add_service", { service_name: "svc", endpoint: server.url, description: "A service" });
      await admin(one, "create_role", { role_name: "analyst" });
      const [{ id }] = await getTools(one, "svc");
      // Both answer (and keep) the role's empty list and the tool without roles.
      expect(await toolsForRole(one, "analyst")).toEqual([]);
      expect(await toolsForRole(two, "analyst")).toEqual([]);
      expect((await getTools(two, "svc"))[0].roles).toEqual([]);

      await admin(two, "attach_role_to_tool", { tool_id: id, role_name: "analyst" });
      expect(await toolsForRole(one, "analyst")).toEqual([{ id, name: "alpha", description: "Alpha v1", service_name: "svc" }]);
      expect((await getTools(one, "svc"))[0].roles).toEqual(["analyst"]);

      served.tools = [tool("alpha", "Alpha v2")];
      await admin(one, "refresh_service", { service_name: "svc" });
      expect((await toolsForRole(two, "analyst"))[0].description).toBe("Alpha v2");
      expect((await getTools(two, "svc"))[0].description).toBe("Alpha v2");

      // /list_services, kept by the other, follows an endpoint moved through this one, and a removal.
      expect((await listServices(two)).svc.url).toBe(server.url);
      const moved = await changingServer(served);
      await admin(one, "update_service", { service_name: "svc", endpoint: moved.url });
      expect((await listServices(two)).svc.url).toBe(moved.url);
      await admin(one, "remove_service", { service_name: "svc" });
      expect(await listServices(two)).toEqual({});
      await moved.stop();
    } finally {
      await one.stop();
      await two.stop();
      await db.drop();
      await server.stop();
    }
  });
});
