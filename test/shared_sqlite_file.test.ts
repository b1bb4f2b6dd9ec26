/**
 * Several processes on one SQLite file: a second process holding the write lock, registries and the stdio
 * server writing in parallel. The registry waits without stopping its event loop, answers "busy" only when
 * the wait runs out, and never keeps a stale snapshot or an open transaction afterwards.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { afterEach, describe, expect, it } from "vitest";
import { call, ENGINE, freePort, ROOT, spawnUntil, startTestMcpServer, startTestRegistry, TEST_SECRET, type TestRegistry, tempDir, text, waitFor } from "./helpers.ts";

const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** `committingAt`: the holder's clock just before it commits (the lock cannot be free earlier), once its line arrived. */
type Holder = { proc: ChildProcess; released: Promise<void>; done: boolean; committingAt?: number };

// Another process (plain libsql, as sqlite3 by hand would) takes the write lock, optionally writes, holds it for `ms`, then commits.
async function holdWriteLock(path: string, ms: number, sqlWhileHeld = ""): Promise<Holder> {
  const script = `
    const Database = require(${JSON.stringify(join(ROOT, "node_modules/libsql"))});
    const db = new Database(${JSON.stringify(path)});
    db.exec("BEGIN IMMEDIATE");
    ${sqlWhileHeld ? `db.exec(${JSON.stringify(sqlWhileHeld)});` : ""}
    console.log("locked");
    setTimeout(() => { console.log("committing " + Date.now()); db.exec("COMMIT"); console.log("released"); process.exit(0); }, ${ms});`;
  const proc = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  const holder: Holder = {
    proc,
    released: new Promise((r) =>
      proc.once("exit", () => {
        holder.done = true;
        r();
      }),
    ),
    done: false,
  };
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on("data", (d: Buffer) => {
      const committing = /committing (\d+)/.exec(d.toString());
      if (committing) holder.committingAt = Number(committing[1]);
      if (d.toString().includes("locked")) resolve();
    });
    proc.once("exit", (code) => reject(new Error(`lock holder exited with ${code}`)));
  });
  return holder;
}

describe.runIf(ENGINE === "sqlite")("a SQLite file shared with other processes", () => {
  const stops: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const stop of stops.splice(0).reverse()) await stop();
  });
  async function registry(file: string, env: Record<string, string> = {}): Promise<TestRegistry> {
    const reg = await startTestRegistry({ DATABASE_URL: `file:${file}`, REGISTRY_SECRET: TEST_SECRET, ...env });
    stops.push(() => reg.stop());
    return reg;
  }

  it("while another process holds the write lock for 3 s: reads and /health answer, /ready says busy, a write waits and lands", async () => {
    const file = join(tempDir(), "registry.db");
    const reg = await registry(file);
    expect(await (await reg.http("/register_user", post({ user_id: "ann" }))).json()).toEqual({ status: "user registered" });
    expect(await (await reg.http("/ready")).json()).toEqual({ status: "ready" });

    const holder = await holdWriteLock(file, 3000);
    const write = reg.http("/register_user", post({ user_id: "bob" })).then(async (r) => ({ status: r.status, body: await r.json(), at: Date.now() }));
    // The event loop keeps serving while the write waits.
    expect((await reg.http("/health")).status).toBe(200);
    expect(await (await reg.http("/role_for_user", post({ user_id: "ann" }))).json()).toEqual({ role: "" });
    const ready = await reg.http("/ready");
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({ status: "unavailable", reason: "the database is busy: its write lock could not be taken within 1 s" });
    expect(holder.done, "the lock was still held during these reads").toBe(false);

    // The write lands once the lock is released, not before: its answer comes after the holder began to commit
    // (compared on the holder's own line, not on its exit, which the parent may see after the answer).
    const written = await write;
    await holder.released;
    expect({ status: written.status, body: written.body, afterRelease: written.at >= holder.committingAt! }).toEqual({
      status: 200,
      body: { status: "user registered" },
      afterRelease: true,
    });
    expect((await (await reg.http("/list_users")).json()).users.map((u: { user: { user_id: string } }) => u.user.user_id)).toEqual(["ann", "bob"]);
    expect(await (await reg.http("/ready")).json()).toEqual({ status: "ready" });
  }, 20_000);

  it("a lock held past REGISTRY_SQLITE_BUSY_TIMEOUT: 503 busy, nothing written; afterwards writes work and reads are fresh", async () => {
    const file = join(tempDir(), "registry.db");
    const reg = await registry(file, { REGISTRY_SQLITE_BUSY_TIMEOUT: "0.3" });
    const c = await reg.client();
    // The other process writes a role while it holds the lock: visible only after its commit.
    const holder = await holdWriteLock(file, 1500, "insert into roles (name, default_system_prompt) values ('from-outside', 'hi')");

    const refused = await reg.http("/register_user", post({ user_id: "bob" }));
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(await refused.json()).toEqual({ error: { code: "unavailable", message: "The database is busy (another process has held its write lock for 0.3 s); try again" } });
    const tool = await call(c, "create_role", { role_name: "inside" });
    expect(tool.isError).toBe(true);
    expect(text(tool)).toBe("The database is busy (another process has held its write lock for 0.3 s); try again");
    expect(holder.done).toBe(false);
    await holder.released;

    // Nothing of the refused calls was written; the other process's commit is seen (no stale snapshot).
    expect((await (await reg.http("/list_users")).json()).users).toEqual([]);
    expect(JSON.parse(text(await call(c, "list_roles")))).toEqual([{ name: "from-outside", default_system_prompt: "hi" }]);
    // The connection is not wedged: the same writes now succeed, and are there for another process.
    expect((await reg.http("/register_user", post({ user_id: "bob" }))).status).toBe(200);
    expect(text(await call(c, "create_role", { role_name: "inside" }))).toBe('Role "inside" created.');
    const other = await registry(file);
    expect(JSON.parse(text(await call(await other.client(), "list_roles"))).map((r: { name: string }) => r.name)).toEqual(["from-outside", "inside"]);
    // The refused call is in the audit log with its outcome: its event waited for the lock too, in the background.
    const outcomes = async () =>
      ((await call(c, "list_audit_events", { action: "create_role" })).structuredContent as { events: { outcome: string }[] }).events.map((e) => e.outcome).sort();
    await waitFor(async () => (await outcomes()).length === 2, "the refused call's audit event");
    expect(await outcomes()).toEqual(["ok", "unavailable"]);
    expect(reg.logs.join("\n")).not.toMatch(/Internal error/);
  }, 20_000);

  it("a token revoked through one registry is never served again by another, even after a busy spell", async () => {
    const file = join(tempDir(), "registry.db");
    const server = await startTestMcpServer({ setup: (s) => s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] })) });
    stops.push(() => server.stop());
    const a = await registry(file);
    const b = await registry(file, { REGISTRY_SQLITE_BUSY_TIMEOUT: "0.2" });
    const ca = await a.client();
    expect(
      (await call(ca, "add_service", { service_name: "wiki", endpoint: server.url, description: "Wiki", requires_authorization: true, method_authorization: "Bearer" })).isError,
    ).toBeFalsy();
    expect((await call(ca, "authorize_user_to_service", { service_name: "wiki", user_id: "ann", token: "t-1" })).isError).toBeFalsy();
    const token = async () => {
      const r = await b.http("/token", post({ service_name: "wiki", user_id: "ann" }));
      return { status: r.status, body: await r.json() };
    };
    expect(await token()).toEqual({ status: 200, body: { token: "t-1", method_authorization: "Bearer" } });

    // b's write fails busy while the lock is held (the wave-one connection froze its snapshot here).
    const holder = await holdWriteLock(file, 800);
    expect((await b.http("/register_user", post({ user_id: "carol" }))).status).toBe(503);
    await holder.released;
    expect(text(await call(ca, "revoke_user_token", { service_name: "wiki", user_id: "ann" }))).toBe('Token of user "ann" for service "wiki" revoked.');
    expect((await token()).status).toBe(401);
    expect((await call(ca, "authorize_user_to_service", { service_name: "wiki", user_id: "ann", token: "t-2" })).isError).toBeFalsy();
    expect((await token()).body).toEqual({ token: "t-2", method_authorization: "Bearer" });
  }, 20_000);

  it("two registry processes and the stdio server writing one file in parallel: every write succeeds and every process sees them all", async () => {
    const dir = tempDir();
    const file = join(dir, "registry.db");
    const env = { DATABASE_URL: `file:${file}`, REGISTRY_SECRET: TEST_SECRET };
    const server = await startTestMcpServer({ setup: (s) => s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] })) });
    stops.push(() => server.stop());
    // The first one creates and migrates the file; the others start at once.
    const processes = await Promise.all(
      [0, 1].map(async () => {
        const port = await freePort();
        const p = await spawnUntil(process.execPath, ["--import", "tsx", "main.ts"], { env: { ...env, MCP_PORT: String(port) }, ready: /MCP Registry listening/ });
        stops.push(() => p.stop());
        return { ...p, url: `http://127.0.0.1:${port}` };
      }),
    );
    const stdio = new Client({ name: "stdio-writer", version: "1.0.0" });
    await stdio.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: ["--import", "tsx", "stdio.ts"],
        cwd: ROOT,
        env: { ...process.env, ...env } as Record<string, string>,
        stderr: "ignore",
      }),
    );
    stops.push(() => stdio.close());
    expect(
      (await call(stdio, "add_service", { service_name: "wiki", endpoint: server.url, description: "Wiki", requires_authorization: true, method_authorization: "Bearer" })).isError,
    ).toBeFalsy();

    const N = 60;
    const ids = [...Array(N).keys()];
    const [one, two] = processes;
    const results = await Promise.all([
      ...ids.map((i) => fetch(`${one.url}/register_user`, post({ user_id: `one-${i}` })).then((r) => r.status)),
      ...ids.map(() => fetch(`${two.url}/token`, post({ service_name: "wiki", user_id: "nobody" })).then((r) => (r.status === 401 ? 200 : r.status))),
      ...ids.map((i) => call(stdio, "authorize_user_to_service", { service_name: "wiki", user_id: `stdio-${i}`, token: `tok-${i}` }).then((r) => (r.isError ? text(r) : 200))),
      ...ids.map((i) =>
        fetch(`${two.url}/mcp`, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
          body: JSON.stringify({ jsonrpc: "2.0", id: i, method: "tools/call", params: { name: "create_role", arguments: { role_name: `two-${i}` } } }),
        }).then(async (r) => {
          const body = await r.json();
          return body.result?.isError ? body.result.content[0].text : r.status;
        }),
      ),
    ]);
    expect(results.filter((r) => r !== 200)).toEqual([]);

    // Every process sees every write of the others.
    const users = (await (await fetch(`${two.url}/list_users`)).json()).users.map((u: { user: { user_id: string } }) => u.user.user_id);
    expect(users.filter((u: string) => u.startsWith("one-")).length).toBe(N);
    expect(users.filter((u: string) => u.startsWith("stdio-")).length).toBe(N);
    const roles = (await call(stdio, "list_roles")).structuredContent as { roles: unknown[] };
    expect(roles.roles.length).toBe(N);
    for (const i of [0, N - 1]) {
      expect(await (await fetch(`${one.url}/token`, post({ service_name: "wiki", user_id: `stdio-${i}` }))).json()).toEqual({ token: `tok-${i}`, method_authorization: "Bearer" });
    }
    for (const p of processes) expect(p.output()).not.toMatch(/Internal error/);
  }, 60_000);

  it("keeps synchronous=FULL by default and NORMAL when REGISTRY_SQLITE_SYNC=normal", async () => {
    const { sql } = await import("drizzle-orm");
    const full = await registry(join(tempDir(), "full.db"));
    const normal = await registry(join(tempDir(), "normal.db"), { REGISTRY_SQLITE_SYNC: "normal" });
    // PRAGMA synchronous is per connection: asked on the registry's own. 2 is FULL, 1 NORMAL.
    expect(await full.ctx.db.all(sql`PRAGMA synchronous`)).toEqual([[2]]);
    expect(await normal.ctx.db.all(sql`PRAGMA synchronous`)).toEqual([[1]]);
    expect(await full.ctx.db.all(sql`PRAGMA journal_mode`)).toEqual([["wal"]]);
  });
});
