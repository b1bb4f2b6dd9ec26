/** The one value each feature exports, and registry.ts composes. */
import type { Hono } from "hono";
import type { Ctx } from "./context.ts";
import type { AppEnv } from "./http.ts";
import type { ToolDef } from "./mcp.ts";

/** What a feature gives the registry: MCP tools, HTTP routes, a start-up step, background work. */
export type Feature = {
  name: string;
  /** Its MCP tools, in the order tools/list shows them. */
  tools?: ToolDef[];
  /** Its HTTP routes, mounted at "/". */
  routes?: Hono<AppEnv>;
  /** Runs once at start-up, before anything is served (e.g. stored secrets checked against the key); may refuse the start. */
  prepare?(ctx: Ctx): Promise<unknown>;
  /** Starts background work; stop() ends it on shutdown. */
  start?(ctx: Ctx): { stop(): Promise<void> | void };
};
