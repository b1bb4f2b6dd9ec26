/** roles: not built yet (stub so the registry composition stays fixed while it is written). */
import { Hono } from "hono";
import type { AppEnv } from "../../shared/http.ts";
import type { ToolDef } from "../../shared/mcp.ts";

export const rolesTools: ToolDef[] = [];
export const rolesRoutes = new Hono<AppEnv>();
