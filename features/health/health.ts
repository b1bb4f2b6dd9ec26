/** Health: the liveness endpoint load balancers and old agents poll. */
import { Hono } from "hono";
import type { AppEnv } from "../../shared/http.ts";
import type { ToolDef } from "../../shared/mcp.ts";

export const healthTools: ToolDef[] = [];

/** GET /health: {"status":"healthy","service":"mcp-server"}, open to anyone. */
export const healthRoutes = new Hono<AppEnv>().get("/health", (c) => c.json({ status: "healthy", service: "mcp-server" }));
