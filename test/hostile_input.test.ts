/**
 * Hostile input at the edges: nesting thousands deep, tools/call arguments that are not objects, ids that
 * look like other ids, internal errors that would log a statement's values; plus what grows on disk (file
 * modes, audit retention). Each attack is reproduced and its refusal asserted, with nothing written.
 */
import { spawn } from "node:child_process";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { sql } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { applyAuditRetention } from "../features/audit/audit.ts";
import { call, ENGINE, freshDatabase, ROOT, startTestRegistry, TEST_SECRET, type TestRegistry, tempDir, text, waitFor } from "./helpers.ts";

const ADMIN = "admin-key-0123456789abcdef";
const AGENT = "agent-key-0123456789abcdef";
const deep = (levels: number): unknown => JSON.parse("[".repeat(levels) + "]".repeat(levels));
const post = (body: string, key = ADMIN) => ({ method: "POST", key, headers: { "content-type": "application/json" }, body });

// One tools/call as a raw JSON-RPC request (the SDK client would refuse to send some of these).
async function rpc(reg: TestRegistry, params: unknown, key = ADMIN) {
  const res = await reg.http("/mcp", {
    method: "POST",
    key,
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 7, method: "tools/call", params }),
  });
  return { status: res.status, body: await res.json() };
}

describe("hostile input", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT });
  });
  afterAll(async () => reg?.stop());
  const events = async (action: string) =>
    ((await call(await reg.client(ADMIN), "list_audit_events", { action })).structuredContent as { events: { actor: string; outcome: string; detail: string }[] }).events;
  const users = async () => (await (await reg.http("/list_users", { key: ADMIN })).json()).users.map((u: { user: { user_id: string } }) => u.user.user_id);

  describe("nesting thousands of levels deep", () => {
    it("an HTTP body is refused with 400, audited, nothing written", async () => {
      const res = await reg.http("/register_user", post(JSON.stringify({ user_id: deep(4000) })));
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: { code: "invalid_input", message: "Cannot register user: the request body is nested more than 64 levels deep" } });
      expect((await events("register_user")).map((e) => e.outcome)).toContain("invalid_input");
      expect(await users()).toEqual([]);
    });

    it("an MCP call is refused with -32602 and audited, also an admin tool called with an agent key", async () => {
      for (const key of [ADMIN, AGENT]) {
        const { status, body } = await rpc(reg, { name: "create_role", arguments: { role_name: deep(4000) } }, key);
        expect(status).toBe(200);
        expect(body).toEqual({ jsonrpc: "2.0", id: 7, error: { code: -32602, message: "Invalid params: the message is nested more than 64 levels deep" } });
      }
      const refused = await waitFor(async () => ((await events("create_role")).length >= 2 ? events("create_role") : null), "the refused calls' events");
      expect(refused!.map((e) => [e.actor.split(":")[0], e.outcome])).toEqual([
        ["agent", "invalid_input"],
        ["admin", "invalid_input"],
      ]);
      expect(JSON.parse(text(await call(await reg.client(ADMIN), "list_roles")))).toEqual([]);
    });

    it("nesting within the bound reaches the tool's own validation, which names the field", async () => {
      const { body } = await rpc(reg, { name: "create_role", arguments: { role_name: deep(40) } });
      expect(body.result).toEqual({ isError: true, content: [{ type: "text", text: "Cannot create role: role_name: must be a string" }] });
    });
  });

  describe("tools/call arguments that are not an object", () => {
    it.each([
      [null, "null"],
      [[1, 2], "an array"],
      ["role", "a string"],
      [5, "a number"],
    ])("arguments %j: -32602 naming the tool, no raw validation dump", async (args, got) => {
      const { body } = await rpc(reg, { name: "list_roles", arguments: args });
      expect(body).toEqual({ jsonrpc: "2.0", id: 7, error: { code: -32602, message: `Invalid params: the arguments of tool "list_roles" must be an object, not ${got}` } });
    });

    it("the same over stdio", async () => {
      const dir = tempDir();
      const proc = spawn(process.execPath, ["--import", "tsx", "stdio.ts"], {
        cwd: ROOT,
        env: { ...process.env, DATABASE_URL: `file:${join(dir, "r.db")}` },
        stdio: ["pipe", "pipe", "ignore"],
      });
      try {
        const answer = new Promise<string>((resolve) => {
          let out = "";
          proc.stdout!.on("data", (d: Buffer) => {
            out += d;
            if (out.includes("\n")) resolve(out.split("\n")[0]);
          });
        });
        proc.stdin!.write(`${JSON.stringify({ jsonrpc: "2.0", id: 3, method: "tools/call", params: { name: "list_roles", arguments: null } })}\n`);
        expect(JSON.parse(await answer)).toEqual({
          jsonrpc: "2.0",
          id: 3,
          error: { code: -32602, message: 'Invalid params: the arguments of tool "list_roles" must be an object, not null' },
        });
      } finally {
        proc.kill();
      }
    });
  });

  describe("ids that are not what they show", () => {
    const cases: [string, string][] = [
      ['"\\ud800ann"', "must be well-formed Unicode (no lone surrogate)"],
      ['"an\\u200bn"', "must not contain invisible or bidirectional formatting characters"],
      ['"\\u202eann"', "must not contain invisible or bidirectional formatting characters"],
      ['"an\\u2028n"', "must not contain invisible or bidirectional formatting characters"],
      ['"ann\\u0007"', "must not contain control characters"],
    ];
    it.each(cases)("user_id %s is refused by register_user and role_for_user, and nothing is recorded", async (id, reason) => {
      for (const [path, action] of [
        ["/register_user", "register user"],
        ["/role_for_user", "get role for user"],
      ]) {
        const res = await reg.http(path, post(`{"user_id":${id}}`));
        expect(res.status).toBe(400);
        expect(await res.json()).toEqual({ error: { code: "invalid_input", message: `Cannot ${action}: user_id: ${reason}` } });
      }
      const tool = await rpc(reg, { name: "assign_role_to_user", arguments: { user_id: JSON.parse(id), role_name: "reader" } });
      expect(tool.body.result.content[0].text).toBe(`Cannot assign role to user: user_id: ${reason}`);
      expect(await users()).toEqual([]);
    });

    it('/system_prompt_for_role refuses control characters like the other fields, and still accepts ""', async () => {
      const bad = await reg.http("/system_prompt_for_role", post('{"role":"rea\\u0007der"}', AGENT));
      expect(bad.status).toBe(400);
      expect(await bad.json()).toEqual({ error: { code: "invalid_input", message: "Cannot get system prompt for role: role: must not contain control characters" } });
      const empty = await reg.http("/system_prompt_for_role", post('{"role":""}', AGENT));
      expect(await empty.json()).toEqual({ default_system_prompt: "" });
    });
  });

  it("an internal error's log line names the failed statement, never its values", async () => {
    const own = await startTestRegistry();
    try {
      const rename = sql`alter table users rename to users_gone`;
      await own.ctx.execute(rename);
      const secretId = "user-id-that-must-not-be-logged";
      const res = await own.http("/register_user", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: secretId }) });
      expect(res.status).toBe(500);
      const line = own.logs.find((l) => l.includes("ERROR Internal error"))!;
      expect(line).toMatch(/Failed query: insert into/);
      expect(own.logs.join("\n")).not.toContain(secretId);
    } finally {
      await own.stop();
    }
  });
});

describe.runIf(ENGINE === "sqlite")("database files", () => {
  it("are created readable by their owner only (the database, -wal and -shm)", async () => {
    const file = join(tempDir(), "registry.db");
    const reg = await startTestRegistry({ DATABASE_URL: `file:${file}`, REGISTRY_SECRET: TEST_SECRET });
    try {
      expect((await reg.http("/register_user", { method: "POST", body: JSON.stringify({ user_id: "ann" }) })).status).toBe(200);
      for (const f of [file, `${file}-wal`, `${file}-shm`]) expect((statSync(f).mode & 0o777).toString(8), f).toBe("600");
    } finally {
      await reg.stop();
    }
  });

  it("an existing file others can read is reported, not changed", async () => {
    const file = join(tempDir(), "registry.db");
    writeFileSync(file, "", { mode: 0o644 });
    const reg = await startTestRegistry({ DATABASE_URL: `file:${file}`, REGISTRY_SECRET: TEST_SECRET });
    try {
      expect(reg.logs.join("\n")).toContain(`WARN The database file ${file} is readable by other users: chmod 600 it (and its -wal and -shm files)`);
      expect(statSync(file).mode & 0o777).toBe(0o644);
    } finally {
      await reg.stop();
    }
  });
});

describe("audit retention", () => {
  it("deletes events older than REGISTRY_AUDIT_RETENTION_DAYS in the background and keeps the rest; 0 keeps all", async () => {
    const db = ENGINE === "postgres" ? await freshDatabase() : { url: `file:${join(tempDir(), "r.db")}`, drop: async () => {} };
    try {
      const first = await startTestRegistry({ DATABASE_URL: db.url, REGISTRY_SECRET: TEST_SECRET, REGISTRY_AUDIT_RETENTION_DAYS: "0" });
      const { auditEvents } = first.ctx.tables;
      const old = new Date(Date.now() - 40 * 86_400_000).toISOString();
      await first.ctx.db.insert(auditEvents).values([
        { at: old, actor: "admin", action: "create_role", target: "role_name=a", outcome: "ok" },
        { at: old, actor: "admin", action: "create_role", target: "role_name=b", outcome: "ok" },
        { actor: "admin", action: "create_role", target: "role_name=recent", outcome: "ok" },
      ]);
      expect(await applyAuditRetention(first.ctx)).toBe(0);
      await first.stop();

      const second = await startTestRegistry({ DATABASE_URL: db.url, REGISTRY_SECRET: TEST_SECRET, REGISTRY_AUDIT_RETENTION_DAYS: "30" });
      try {
        const targets = async () => (await second.ctx.db.select({ target: auditEvents.target }).from(auditEvents)).map((r) => r.target);
        await waitFor(async () => !(await targets()).includes("role_name=a"), "the retention to run");
        expect((await targets()).filter((t) => t.startsWith("role_name="))).toEqual(["role_name=recent"]);
        expect(second.logs.join("\n")).toContain("Audit retention: deleted 2 events older than 30 days");
      } finally {
        await second.stop();
      }
    } finally {
      await db.drop();
    }
  });
});
