/** Health: liveness (/health, which old agents poll) and readiness (/ready, for load balancers). */
import { Hono } from "hono";
import type { AppEnv } from "../../shared/http.ts";
import type { Feature } from "../../shared/feature.ts";

/** How long the database may take to answer a readiness probe. */
const READY_DEADLINE_MS = 1000;

/**
 * GET /health: {"status":"healthy","service":"mcp-server"} while the process serves (liveness), open to anyone.
 * GET /ready: 200 {"status":"ready"} when the database answers within a second (on a local SQLite file:
 * a read, and its write lock can be taken), else 503 {"status":"unavailable","reason"} — open to anyone.
 */
const routes = new Hono<AppEnv>()
  .get("/health", (c) => c.json({ status: "healthy", service: "mcp-server" }))
  .get("/ready", async (c) => {
    try {
      await c.get("ctx").ready(READY_DEADLINE_MS);
      return c.json({ status: "ready" });
    } catch (err) {
      // The reason names what failed in the registry's words (never SQL or a connection string).
      const reason =
        (err as { status?: number }).status === 503 ? "the database is busy: its write lock could not be taken within 1 s" : `the database does not answer: ${describe(err)}`;
      c.get("ctx").log.warn("Not ready", { reason });
      return c.json({ status: "unavailable", reason }, 503);
    }
  });

// A short description of a database failure: its code or a generic phrase, never the driver's full text.
function describe(err: unknown): string {
  const e = err as { code?: unknown; message?: unknown };
  if (typeof e?.code === "string" && /^[A-Z0-9_]+$/.test(e.code)) return e.code;
  return /no answer within/.test(String(e?.message)) ? `no answer within ${READY_DEADLINE_MS / 1000} s` : "connection failed";
}

/** Liveness and readiness. */
export const health: Feature = { name: "health", routes };
