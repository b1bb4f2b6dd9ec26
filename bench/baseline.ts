/**
 * The baselines the registry is measured against, served like the registry (Hono on @hono/node-server,
 * same runtime, own process): GET /json, a bare Hono route answering a small JSON body; POST /mcp, a bare
 * SDK stateless MCP server (low-level Server + WebStandardStreamableHTTPServerTransport, one trivial tool).
 * `baseline.ts hono` serves only the first, `baseline.ts sdk` only the second (the benchmark runs each in a
 * fresh process of its own). With BASELINE_MANY_TOOLS=<n>, `baseline.ts sdk` also serves POST /many/mcp: the
 * same server listing n other tools, t0 to t<n-1> (the benchmark registers it as the gateway's service of a
 * role with 500 tools; /mcp is unchanged), and POST /many/paged/mcp: the same n tools in pages of
 * BASELINE_PAGE_SIZE (100, the gateway's page size) following nextCursor, which the gateway's listing of those
 * tools is compared with (same tools, same round trips). Prints "baseline listening on <port>" once it accepts connections.
 */
import process from "node:process";
import { serve } from "@hono/node-server";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import { type Context, Hono } from "hono";
import { answerStateless } from "./stateless.ts";

const ECHO = {
  name: "echo",
  description: "Echoes its text.",
  inputSchema: { type: "object" as const, properties: { text: { type: "string" } }, required: ["text"] },
};

const MANY = Array.from({ length: Number(process.env.BASELINE_MANY_TOOLS ?? 0) }, (_, i) => ({
  name: `t${i}`,
  description: `Tool ${i} of the many-tools service: looks something up for the query and returns the matches as JSON.`,
  inputSchema: { type: "object" as const, properties: { query: { type: "string", description: "What to look for" } }, required: ["query"] },
}));

const PAGE = Number(process.env.BASELINE_PAGE_SIZE ?? 100);

// One page of `tools`: the cursor is the offset of the page (a real server's would be opaque too).
function pageOf(tools: Tool[], pageSize: number, cursor: string | undefined): { tools: Tool[]; nextCursor?: string } {
  const offset = Number(cursor ?? 0);
  const next = offset + pageSize;
  return { tools: tools.slice(offset, next), ...(next < tools.length ? { nextCursor: String(next) } : {}) };
}

// The smallest honest version of each thing the registry does.
function baselineApp(which: string): Hono {
  const app = new Hono();
  if (which !== "sdk") app.get("/json", (c) => c.json({ status: "healthy", service: "mcp-server" }));
  if (which === "hono") return app;
  // The same best practices the registry uses (DESIGN.md section 2): one shared validator, JSON responses.
  const mcp =
    (tools: Tool[], pageSize = tools.length) =>
    (c: Context) =>
      answerStateless(c.req.raw, "baseline", "1.0.0", {
        list: (cursor) => pageOf(tools, pageSize, cursor),
        call: (args) => ({ content: [{ type: "text", text: String(args?.text ?? "") }] }),
      });
  app.post("/mcp", mcp([ECHO]));
  if (MANY.length) app.post("/many/mcp", mcp(MANY));
  if (MANY.length) app.post("/many/paged/mcp", mcp(MANY, PAGE));
  return app;
}

const server = serve({ fetch: baselineApp(process.argv[2] ?? "all").fetch, hostname: "127.0.0.1", port: 0 }, (info) => {
  console.error(`baseline listening on ${info.port}`);
});
process.once("SIGTERM", () => server.close(() => process.exit(0)));
