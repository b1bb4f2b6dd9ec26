/**
 * The backup docs/operations.md prescribes for a SQLite file: `VACUUM INTO` while the registry runs and
 * writes, plus the key file beside it. Restored together they serve the same tokens; without the key
 * file the registry refuses to start. (SQLite only: PostgreSQL is backed up with pg_dump.)
 */
import { copyFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { createClient } from "@libsql/client";
import { ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { describe, expect, it } from "vitest";
import { call, ENGINE, startTestMcpServer, startTestRegistry, tempDir } from "./helpers.ts";

const ADMIN = "admin-key-0123456789abcdef";
const AGENT = "agent-key-0123456789abcdef";
const KEYS = { REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT };

describe.runIf(ENGINE === "sqlite")("backing up a SQLite file with its key", () => {
  it("VACUUM INTO during writes, restored with the key file, serves the same tokens; without the key file start-up is refused", async () => {
    const dir = tempDir();
    const live = join(dir, "registry.db");
    const copy = join(dir, "backup.db");
    const service = await startTestMcpServer({
      setup: (server) =>
        server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "write", description: "Write a note", inputSchema: { type: "object" as const } }] })),
    });
    const reg = await startTestRegistry({ ...KEYS, DATABASE_URL: `file:${live}` });
    let restored: Awaited<ReturnType<typeof startTestRegistry>> | undefined;
    try {
      const admin = await reg.client(ADMIN);
      const added = await call(admin, "add_service", {
        service_name: "notes",
        endpoint: service.url,
        description: "Notes",
        requires_authorization: true,
        method_authorization: "Bearer",
      });
      expect(added.isError).toBeFalsy();
      await call(admin, "authorize_user_to_service", { service_name: "notes", user_id: "ann", token: "ann-secret-token" });
      // Writes keep coming while the copy is taken.
      let writing = true;
      const writes = (async () => {
        for (let i = 0; writing; i++) await call(admin, "authorize_user_to_service", { service_name: "notes", user_id: `user-${i}`, token: `token-${i}` });
      })();
      const sqlite = createClient({ url: `file:${live}` });
      await sqlite.execute(`VACUUM INTO '${copy}'`);
      sqlite.close();
      writing = false;
      await writes;
      copyFileSync(`${live}.key`, `${copy}.key`);
      await reg.stop();

      restored = await startTestRegistry({ ...KEYS, DATABASE_URL: `file:${copy}` });
      const res = await restored.http("/token?service_name=notes&user_id=ann", { key: AGENT });
      expect(await res.json()).toEqual({ token: "ann-secret-token", method_authorization: "Bearer" });
      // Every user the copy has came whole: each token reads back as written.
      const users = ((await call(await restored.client(ADMIN), "list_users")).structuredContent as { users: [string, string][] }).users.map(([u]) => u);
      for (const user of users.filter((u) => u.startsWith("user-"))) {
        const token = await restored.http(`/token?service_name=notes&user_id=${user}`, { key: AGENT });
        expect(await token.json()).toEqual({ token: `token-${user.slice(5)}`, method_authorization: "Bearer" });
      }
      await restored.stop();
      restored = undefined;

      // The same copy without its key file: the stored tokens cannot be read, and the registry says so.
      const keyless = join(dir, "keyless.db");
      copyFileSync(copy, keyless);
      expect(existsSync(`${keyless}.key`)).toBe(false);
      await expect(startTestRegistry({ ...KEYS, DATABASE_URL: `file:${keyless}` })).rejects.toThrow(/key/i);
    } finally {
      await restored?.stop();
      await service.stop();
    }
  });
});
