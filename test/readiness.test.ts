/** Liveness and readiness: /health answers while the process serves, /ready only while the database answers. */
import { afterEach, describe, expect, it } from "vitest";
import { temporaryPostgres } from "../shared/db/temporary.ts";
import { ENGINE, startTestRegistry, type TestRegistry } from "./helpers.ts";

const ADMIN = "admin-key-0123456789abcdef";

describe("readiness", () => {
  let reg: TestRegistry | undefined;
  afterEach(async () => {
    await reg?.stop();
    reg = undefined;
  });

  it("GET /ready is public and answers 200 while the database answers", async () => {
    // With keys set: /ready, like /health, needs none (a load balancer has none).
    reg = await startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN });
    const res = await reg.http("/ready");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ready" });
    expect(await (await reg.http("/health")).json()).toEqual({ status: "healthy", service: "mcp-server" });
  });

  // The database can be taken away only on PostgreSQL (SQLite's busy file is tested in shared_sqlite_file).
  it.runIf(ENGINE === "postgres")("a database that is gone: /ready 503 with the reason, requests 503 unavailable, /health still 200", async () => {
    const db = await temporaryPostgres(process.env.TEST_DATABASE_URL!, "gone");
    reg = await startTestRegistry({ DATABASE_URL: db.url });
    await db.drop();
    const ready = await reg.http("/ready");
    expect(ready.status).toBe(503);
    const body = await ready.json();
    expect(body.status).toBe("unavailable");
    expect(body.reason).toMatch(/^the database does not answer: /);
    expect(JSON.stringify(body)).not.toContain(db.url);
    const role = await reg.http("/role_for_user", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user_id: "ann" }) });
    expect(role.status).toBe(503);
    expect(role.headers.get("retry-after")).toBe("1");
    expect(await role.json()).toEqual({ error: { code: "unavailable", message: "The database is unavailable; try again" } });
    expect((await reg.http("/health")).status).toBe(200);
    expect(reg.logs.join("\n")).not.toMatch(/Internal error/);
  });
});
