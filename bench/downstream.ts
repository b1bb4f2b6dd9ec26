/**
 * The large shape's fake downstream: many MCP services on one port, by path. POST /s/<n>/mcp is service n,
 * a stateless SDK server (low-level Server + WebStandardStreamableHTTPServerTransport, JSON responses, as
 * bench/baseline.ts serves) listing the DOWNSTREAM_TOOLS (10) tools bench/seed.ts stores for service n, so a
 * refresh finds no change. A second port accepts connections and never answers: a service that hangs until
 * the registry's discovery timeout. GET /stats says what was asked: {"requests", "services", "hung"}.
 * Prints "downstream listening on <port>, hanging on <port>" once both accept connections.
 */
import { createServer, type Socket } from "node:net";
import process from "node:process";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { DOWNSTREAM_VERSION, toolDefinition } from "./shape.ts";
import { answerStateless } from "./stateless.ts";

const TOOLS = Number(process.env.DOWNSTREAM_TOOLS ?? 10);
const stats = { requests: 0, services: new Set<number>(), hung: 0 };

const app = new Hono();
app.post("/s/:n/mcp", async (c) => {
  const n = Number(c.req.param("n"));
  stats.requests++;
  stats.services.add(n);
  return answerStateless(c.req.raw, `bench-downstream-${n}`, DOWNSTREAM_VERSION, {
    list: () => ({ tools: Array.from({ length: TOOLS }, (_, j) => toolDefinition(n, j)) }),
    call: () => ({ content: [{ type: "text", text: "ok" }] }),
  });
});
// Stateless: no stream to open, no session to end (405, as the transport's spec says; a 404 would be an error to the client).
app.on(["GET", "DELETE"], "/s/:n/mcp", (c) => c.body(null, 405));
app.get("/stats", (c) => c.json({ requests: stats.requests, services: stats.services.size, hung: stats.hung }));

// Accepts and never answers: the registry's discovery waits until its timeout, then closes the connection.
const held = new Set<Socket>();
const hanging = createServer((socket) => {
  stats.hung++;
  held.add(socket);
  socket.on("error", () => {});
  socket.on("close", () => held.delete(socket));
});

const http = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, (info) => {
  hanging.listen(0, "127.0.0.1", () => {
    console.error(`downstream listening on ${info.port}, hanging on ${(hanging.address() as { port: number }).port}`);
  });
});
process.once("SIGTERM", () => {
  for (const socket of held) socket.destroy();
  hanging.close();
  http.close(() => process.exit(0));
  // Kept-alive connections of the registry would hold close() open: the process ends regardless.
  setTimeout(() => process.exit(0), 1000).unref();
});
