/**
 * A registry killed with SIGKILL in the middle of a burst of writes, then started again on the same
 * database (both engines): every acknowledged write is there, nothing unacknowledged is half-written,
 * and a token whose revocation was acknowledged is never served again.
 */
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { ENGINE, freePort, freshDatabase, spawnUntil, startTestMcpServer, TEST_SECRET, tempDir } from "./helpers.ts";

const userIds = (body: { users: { user: { user_id: string } }[] }) => body.users.map((u) => u.user.user_id);
const post = (body: unknown) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

// Every process started, stopped after the test even when it fails midway.
const started: { stop(): Promise<void> }[] = [];

async function start(databaseUrl: string) {
  const port = await freePort();
  const p = await spawnUntil(process.execPath, ["--import", "tsx", "main.ts"], {
    env: { MCP_PORT: String(port), DATABASE_URL: databaseUrl, REGISTRY_SECRET: TEST_SECRET, REGISTRY_REFRESH_INTERVAL: "0" },
    ready: /MCP Registry listening/,
  });
  started.push(p);
  return { ...p, url: `http://127.0.0.1:${port}` };
}

// One MCP tool call as one stateless JSON-RPC request; resolves to the tool's text, rejects on any failure.
async function tool(url: string, name: string, args: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${url}/mcp`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name, arguments: args } }),
  });
  const body = await res.json();
  if (!body.result || body.result.isError) throw new Error(JSON.stringify(body));
  return body.result.content[0].text;
}

describe("a registry killed during a burst of writes", () => {
  let db: { url: string; drop(): Promise<void> };
  afterAll(async () => {
    await Promise.all(started.map((p) => p.stop()));
    await db?.drop();
  });

  it("keeps every acknowledged write, half-writes nothing, never serves a revoked token", async () => {
    db = ENGINE === "postgres" ? await freshDatabase() : { url: `file:${join(tempDir(), "registry.db")}`, drop: async () => {} };
    const first = await start(db.url);
    // A service needing tokens (no discovery: the endpoint is never called after this write).
    const server = await startTestMcpServer({ setup: (s) => s.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [] })) });
    try {
      await tool(first.url, "add_service", { service_name: "wiki", endpoint: server.url, description: "Wiki", requires_authorization: true, method_authorization: "Bearer" });
    } finally {
      await server.stop();
    }
    const REVOKED = 30;
    for (let i = 0; i < REVOKED; i++) await tool(first.url, "authorize_user_to_service", { service_name: "wiki", user_id: `old-${i}`, token: `old-tok-${i}` });

    // The burst: new users with their token (user and token in one transaction) and revocations, 8 at a time.
    const ops = [...Array(400).keys()].map((i) =>
      i % 4 === 3 && i / 4 < REVOKED ? { kind: "revoke" as const, user: `old-${Math.floor(i / 4)}` } : { kind: "store" as const, user: `new-${i}`, token: `new-tok-${i}` },
    );
    const acked: typeof ops = [];
    let next = 0;
    let killed = false;
    // A second instance writes the same database meanwhile: the contention that wedged wave one's connection
    // (acknowledged writes left in a transaction that never committed, gone after the kill).
    const other = await start(db.url);
    const otherAcked: string[] = [];
    const otherWorker = async () => {
      for (let i = 0; !killed && i < 1000; i++) {
        const user = `other-${otherAcked.length}-${Math.random().toString(36).slice(2, 8)}`;
        const res = await fetch(`${other.url}/register_user`, post({ user_id: user }));
        expect(res.status, await res.clone().text()).toBe(200);
        otherAcked.push(user);
      }
    };
    const worker = async () => {
      while (next < ops.length && !killed) {
        const op = ops[next++];
        try {
          if (op.kind === "store") await tool(first.url, "authorize_user_to_service", { service_name: "wiki", user_id: op.user, token: op.token });
          else await tool(first.url, "revoke_user_token", { service_name: "wiki", user_id: op.user });
          acked.push(op);
        } catch {
          /* unacknowledged: killed mid-request */
        }
        if (acked.length >= 60 && !killed) {
          killed = true;
          process.kill(-first.proc.pid!, "SIGKILL");
        }
      }
    };
    await Promise.all([...[...Array(8)].map(worker), otherWorker(), otherWorker()]);
    await other.stop();
    expect(killed).toBe(true);
    expect(acked.some((o) => o.kind === "revoke") && acked.some((o) => o.kind === "store")).toBe(true);
    await new Promise((r) => (first.proc.exitCode !== null || first.proc.signalCode !== null ? r(null) : first.proc.once("exit", r)));
    expect(first.proc.signalCode).toBe("SIGKILL");

    const again = await start(db.url);
    try {
      const token = async (user: string) => {
        const res = await fetch(`${again.url}/token`, post({ service_name: "wiki", user_id: user }));
        return { status: res.status, body: await res.json() };
      };
      for (const op of acked) {
        if (op.kind === "store")
          expect(await token(op.user), `acknowledged token of ${op.user}`).toEqual({ status: 200, body: { token: op.token, method_authorization: "Bearer" } });
        else expect((await token(op.user)).status, `acknowledged revocation of ${op.user}`).toBe(401);
      }
      const listed = new Set(userIds(await (await fetch(`${again.url}/list_users`)).json()));
      expect(
        otherAcked.filter((u) => !listed.has(u)),
        "the other instance's acknowledged users",
      ).toEqual([]);
      // Unacknowledged stores are all or nothing: a user they created always has its token.
      for (const user of [...listed].filter((u) => u.startsWith("new-"))) {
        const op = ops.find((o) => o.user === user)!;
        expect(await token(user), `the user ${user} exists only with its token`).toEqual({
          status: 200,
          body: { token: (op as { token: string }).token, method_authorization: "Bearer" },
        });
      }
      expect(again.output()).not.toMatch(/Internal error|cannot be decrypted/);
    } finally {
      await again.stop();
    }
  }, 90_000);
});
