import type { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { call, startTestRegistry, type TestRegistry, text } from "./helpers.ts";

const ADMIN = "admin-key-0123456789abcdef";
const AGENT = "agent-key-0123456789abcdef";

const json = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

describe("users", () => {
  let reg: TestRegistry;
  let c: Client;
  beforeAll(async () => {
    reg = await startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT });
    c = await reg.client(ADMIN);
  });
  afterAll(async () => {
    await reg?.stop();
  });
  // Every test starts with the roles "support" and "analyst" and no users.
  beforeEach(async () => {
    await reg.ctx.db.delete(reg.ctx.tables.users);
    await reg.ctx.db.delete(reg.ctx.tables.roles);
    await call(c, "create_role", { role_name: "support" });
    await call(c, "create_role", { role_name: "analyst" });
  });

  const admin = (path: string, init: RequestInit = {}) => reg.http(path, { ...init, key: ADMIN });
  const agent = (path: string, init: RequestInit = {}) => reg.http(path, { ...init, key: AGENT });

  async function userList(): Promise<[string, string][]> {
    const r = await call(c, "list_users");
    expect(r.isError).toBeFalsy();
    const pairs = (r.structuredContent as { users: [string, string][] }).users;
    expect(JSON.parse(text(r))).toEqual(pairs);
    return pairs;
  }
  async function expectToolError(name: string, args: Record<string, unknown>, message: string | RegExp) {
    const r = await call(c, name, args);
    expect(r.isError).toBe(true);
    if (typeof message === "string") expect(text(r)).toBe(message);
    else expect(text(r)).toMatch(message);
  }
  async function expectHttpError(res: Response, status: number, code: string, message: string) {
    expect(res.status).toBe(status);
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(body.error.code).toBe(code);
    expect(body.error.message.startsWith(message)).toBe(true);
  }

  describe("assign_role_to_user, remove_role_from_user, list_users", () => {
    it("assigns a role, creating an unknown user, and a second role replaces the first", async () => {
      expect(text(await call(c, "assign_role_to_user", { user_id: "ann", role_name: "support" }))).toBe('Role "support" assigned to user "ann".');
      expect(await userList()).toEqual([["ann", "support"]]);
      expect(text(await call(c, "assign_role_to_user", { user_id: " ann ", role_name: " analyst " }))).toBe('Role "analyst" assigned to user "ann".');
      expect(await userList()).toEqual([["ann", "analyst"]]);
      // Assigning the same role again is fine.
      expect((await call(c, "assign_role_to_user", { user_id: "ann", role_name: "analyst" })).isError).toBeFalsy();
      expect(await userList()).toEqual([["ann", "analyst"]]);
    });

    it('lists users as compact [user_id, role] pairs, role "" when none', async () => {
      await call(c, "assign_role_to_user", { user_id: "ann", role_name: "support" });
      await agent("/role_for_user", json({ user_id: "bob" }));
      const r = await call(c, "list_users");
      expect(text(r)).toBe('[["ann","support"],["bob",""]]');
      expect(r.structuredContent).toEqual({
        users: [
          ["ann", "support"],
          ["bob", ""],
        ],
      });
    });

    it("refuses an unknown role, bad ids and wrong types without creating the user", async () => {
      await expectToolError("assign_role_to_user", { user_id: "ann", role_name: "ghost" }, 'Cannot assign role "ghost" to user "ann": no such role');
      await expectToolError("assign_role_to_user", { user_id: "", role_name: "support" }, "Cannot assign role to user: user_id: must not be empty");
      await expectToolError("assign_role_to_user", { user_id: "u".repeat(257), role_name: "support" }, "Cannot assign role to user: user_id: must be at most 256 characters");
      await expectToolError("assign_role_to_user", { user_id: 42, role_name: "support" }, "Cannot assign role to user: user_id: must be a string");
      await expectToolError("assign_role_to_user", { user_id: "ann", role_name: "" }, "Cannot assign role to user: role_name: must not be empty");
      await expectToolError("assign_role_to_user", { user_id: "ann" }, /^Cannot assign role to user: role_name: /);
      expect(await userList()).toEqual([]);
      // 256 characters is the limit.
      expect((await call(c, "assign_role_to_user", { user_id: "u".repeat(256), role_name: "support" })).isError).toBeFalsy();
      expect(await userList()).toEqual([["u".repeat(256), "support"]]);
    });

    it("keeps a user's role when assigning an unknown role", async () => {
      await call(c, "assign_role_to_user", { user_id: "ann", role_name: "support" });
      await expectToolError("assign_role_to_user", { user_id: "ann", role_name: "ghost" }, 'Cannot assign role "ghost" to user "ann": no such role');
      expect(await userList()).toEqual([["ann", "support"]]);
    });

    it("removes the role a user has", async () => {
      await call(c, "assign_role_to_user", { user_id: "ann", role_name: "support" });
      expect(text(await call(c, "remove_role_from_user", { user_id: "ann", role_name: "support" }))).toBe('Role "support" removed from user "ann".');
      expect(await userList()).toEqual([["ann", ""]]);
    });

    it("fails clearly when the user has another role or none, or is unknown, changing nothing", async () => {
      await call(c, "assign_role_to_user", { user_id: "ann", role_name: "support" });
      await agent("/role_for_user", json({ user_id: "bob" }));
      await expectToolError("remove_role_from_user", { user_id: "ann", role_name: "analyst" }, 'Cannot remove role "analyst" from user "ann": the user has role "support"');
      await expectToolError("remove_role_from_user", { user_id: "bob", role_name: "support" }, 'Cannot remove role "support" from user "bob": the user has no role');
      await expectToolError("remove_role_from_user", { user_id: "carl", role_name: "support" }, 'Cannot remove role "support" from user "carl": no such user');
      await expectToolError("remove_role_from_user", { user_id: "ann", role_name: "ghost" }, 'Cannot remove role "ghost" from user "ann": no such role');
      await expectToolError("remove_role_from_user", { user_id: "", role_name: "support" }, "Cannot remove role from user: user_id: must not be empty");
      await expectToolError("remove_role_from_user", { user_id: "ann", role_name: 1 }, "Cannot remove role from user: role_name: must be a string");
      expect(await userList()).toEqual([
        ["ann", "support"],
        ["bob", ""],
      ]);
    });

    it("is for admins only: an agent neither sees nor calls the user tools", async () => {
      const agentClient = await reg.client(AGENT);
      const names = (await agentClient.listTools()).tools.map((t) => t.name);
      for (const name of ["assign_role_to_user", "remove_role_from_user", "list_users"]) expect(names).not.toContain(name);
      const r = await call(agentClient, "assign_role_to_user", { user_id: "ann", role_name: "support" });
      expect(r.isError).toBe(true);
      expect(text(r)).toBe('Cannot call tool "assign_role_to_user": not allowed for this key');
      expect(await userList()).toEqual([]);
    });

    it("lists the user tools with titles, annotations and an output schema for list_users", async () => {
      const listed = (await c.listTools()).tools;
      for (const name of ["assign_role_to_user", "remove_role_from_user", "list_users"]) {
        const tool = listed.find((t) => t.name === name)!;
        expect(tool.title).toBeTruthy();
        expect(tool.annotations?.openWorldHint).toBe(false);
        expect(typeof tool.annotations?.destructiveHint).toBe("boolean");
      }
      expect(listed.find((t) => t.name === "list_users")!.annotations?.readOnlyHint).toBe(true);
      expect(listed.find((t) => t.name === "list_users")!.outputSchema).toBeTruthy();
    });
  });

  describe("POST /role_for_user", () => {
    it("answers a user's role and records an unknown user without a role", async () => {
      await call(c, "assign_role_to_user", { user_id: "ann", role_name: "support" });
      const known = await agent("/role_for_user", json({ user_id: "ann" }));
      expect(known.status).toBe(200);
      expect(await known.json()).toEqual({ role: "support" });
      const unknown = await agent("/role_for_user", json({ user_id: "bob" }));
      expect(await unknown.json()).toEqual({ role: "" });
      expect(await userList()).toEqual([
        ["ann", "support"],
        ["bob", ""],
      ]);
      // Asking again does not duplicate the user.
      expect(await (await agent("/role_for_user", json({ user_id: " bob " }))).json()).toEqual({ role: "" });
      expect(await userList()).toEqual([
        ["ann", "support"],
        ["bob", ""],
      ]);
    });

    it("answers 400 for an empty, missing or mistyped user_id and bad bodies, recording nobody", async () => {
      await expectHttpError(await agent("/role_for_user", json({ user_id: "" })), 400, "invalid_input", "Cannot get role for user: user_id: must not be empty");
      await expectHttpError(await agent("/role_for_user", json({})), 400, "invalid_input", "Cannot get role for user: user_id: ");
      await expectHttpError(await agent("/role_for_user", json({ user_id: 7 })), 400, "invalid_input", "Cannot get role for user: user_id: must be a string");
      await expectHttpError(
        await agent("/role_for_user", json({ user_id: "u".repeat(257) })),
        400,
        "invalid_input",
        "Cannot get role for user: user_id: must be at most 256 characters",
      );
      await expectHttpError(await agent("/role_for_user", { method: "POST", body: "{" }), 400, "invalid_input", "Cannot get role for user: the request body is not valid JSON");
      await expectHttpError(await agent("/role_for_user", json(null)), 400, "invalid_input", "Cannot get role for user: the request body must be a JSON object");
      expect(await userList()).toEqual([]);
    });

    it("needs a key", async () => {
      await expectHttpError(await reg.http("/role_for_user", json({ user_id: "ann" })), 401, "unauthorized", "Authentication required");
      expect(await userList()).toEqual([]);
    });
  });

  describe("POST /register_user", () => {
    it("creates a user with or without a role, and updates the role of a known one", async () => {
      const res = await admin("/register_user", json({ user_id: "ann", role_name: "support" }));
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual({ status: "user registered" });
      expect(await (await admin("/register_user", json({ user_id: "bob" }))).json()).toEqual({ status: "user registered" });
      expect(await userList()).toEqual([
        ["ann", "support"],
        ["bob", ""],
      ]);
      await admin("/register_user", json({ user_id: "bob", role_name: "analyst" }));
      expect(await userList()).toEqual([
        ["ann", "support"],
        ["bob", "analyst"],
      ]);
      // Without a role name (left out, "" or null) a known user's role is left alone.
      for (const body of [{ user_id: "bob" }, { user_id: "bob", role_name: "" }, { user_id: "bob", role_name: null }]) {
        expect((await admin("/register_user", json(body))).status).toBe(200);
      }
      expect(await userList()).toEqual([
        ["ann", "support"],
        ["bob", "analyst"],
      ]);
    });

    it("answers 404 for an unknown role and writes nothing", async () => {
      await expectHttpError(
        await admin("/register_user", json({ user_id: "ann", role_name: "ghost" })),
        404,
        "not_found",
        'Cannot assign role "ghost" to user "ann": no such role',
      );
      expect(await userList()).toEqual([]);
      await admin("/register_user", json({ user_id: "bob", role_name: "support" }));
      await expectHttpError(
        await admin("/register_user", json({ user_id: "bob", role_name: "ghost" })),
        404,
        "not_found",
        'Cannot assign role "ghost" to user "bob": no such role',
      );
      expect(await userList()).toEqual([["bob", "support"]]);
    });

    it("answers 400 for empty, missing or mistyped values and bad bodies, writing nothing", async () => {
      const cases: [RequestInit, string][] = [
        [json({ user_id: "" }), "Cannot register user: user_id: must not be empty"],
        [json({ role_name: "support" }), "Cannot register user: user_id: "],
        [json({ user_id: ["ann"] }), "Cannot register user: user_id: must be a string"],
        [json({ user_id: "ann", role_name: 3 }), "Cannot register user: role_name: must be a string"],
        [json({ user_id: "ann", role_name: "r".repeat(65) }), "Cannot register user: role_name: must be at most 64 characters"],
        [{ method: "POST", body: "user_id=ann" }, "Cannot register user: the request body is not valid JSON"],
        [json([{ user_id: "ann" }]), "Cannot register user: the request body must be a JSON object"],
      ];
      for (const [init, message] of cases) await expectHttpError(await admin("/register_user", init), 400, "invalid_input", message);
      expect(await userList()).toEqual([]);
    });

    it("is for admins only", async () => {
      await expectHttpError(await agent("/register_user", json({ user_id: "ann", role_name: "support" })), 403, "forbidden", "The agent key may not call POST /register_user");
      await expectHttpError(await reg.http("/register_user", json({ user_id: "ann" })), 401, "unauthorized", "Authentication required");
      expect(await userList()).toEqual([]);
    });

    it("records an audit event for each call, successful or not", async () => {
      const { auditEvents } = reg.ctx.tables;
      await reg.ctx.db.delete(auditEvents);
      await admin("/register_user", json({ user_id: "ann", role_name: "support" }));
      await admin("/register_user", json({ user_id: "ann", role_name: "ghost" }));
      const events = await reg.ctx.db.select({ action: auditEvents.action, target: auditEvents.target, outcome: auditEvents.outcome }).from(auditEvents).orderBy(auditEvents.id);
      expect(events).toEqual([
        { action: "register_user", target: "role_name=support user_id=ann", outcome: "ok" },
        { action: "register_user", target: "role_name=ghost user_id=ann", outcome: "not_found" },
      ]);
    });
  });

  describe("GET /list_users", () => {
    it('lists users with their role, "" when none', async () => {
      const empty = await admin("/list_users");
      expect(empty.status).toBe(200);
      expect(await empty.json()).toEqual({ users: [] });
      await admin("/register_user", json({ user_id: "ann", role_name: "support" }));
      await admin("/register_user", json({ user_id: "bob" }));
      expect(await (await admin("/list_users")).json()).toEqual({
        users: [{ user: { user_id: "ann", role: "support" } }, { user: { user_id: "bob", role: "" } }],
      });
    });

    it("is for admins only", async () => {
      await expectHttpError(await agent("/list_users"), 403, "forbidden", "The agent key may not call GET /list_users");
    });
  });
});
