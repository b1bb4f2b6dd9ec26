/** MCP plumbing: defineTool over the low-level SDK Server, and the stateless streamable HTTP endpoint. */
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { CallToolRequestSchema, type CallToolResult, ListToolsRequestSchema, type Tool as ListedTool, type ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { toJsonSchema } from "@valibot/to-json-schema";
import type { Context } from "hono";
import type * as v from "valibot";
import { type Caller, mayCall } from "./access.ts";
import { auditTarget, recordAudit } from "./audit.ts";
import type { Ctx } from "./context.ts";
import { AppError, toToolError } from "./errors.ts";
import type { AppEnv } from "./http.ts";
import { validate } from "./validate.ts";

export const SERVER_INFO = { name: "mcp-registry", version: "0.1.0" };
const INSTRUCTIONS = "Registry of MCP services: list services and their tools, manage roles, users and user credentials.";

/** What a tool returns: a short sentence or compact JSON as text, and the same data structured. */
export type ToolOutput = { text: string; data?: Record<string, unknown> };

export type ToolDef<S extends v.GenericSchema = v.GenericSchema> = {
  name: string;
  title: string;
  description: string;
  input: S;
  /** Schema of `data` (structuredContent), for tools that return data. */
  output?: v.GenericSchema;
  annotations: Omit<ToolAnnotations, "title">;
  run(ctx: Ctx, input: v.InferOutput<S>, caller: Caller): Promise<ToolOutput>;
};

/** Declares a tool; the generic only ties `run`'s input type to the schema. */
export function defineTool<S extends v.GenericSchema>(tool: ToolDef<S>): ToolDef {
  return tool as unknown as ToolDef;
}

function jsonSchema(schema: v.GenericSchema): ListedTool["inputSchema"] {
  // Transformations such as trim have no JSON Schema form; they only run server-side.
  const { $schema: _, ...rest } = toJsonSchema(schema, { errorMode: "ignore" }) as Record<string, unknown>;
  return rest as ListedTool["inputSchema"];
}

/** Runs one tool call for a caller: access rule, input validation, errors mapped to tool results. */
export async function callTool(ctx: Ctx, tools: Map<string, ToolDef>, caller: Caller, name: string, args: unknown): Promise<CallToolResult> {
  const requestId = crypto.randomUUID().slice(0, 8);
  const tool = tools.get(name);
  // Every call of a tool that changes something is audited, allowed or not, succeeded or not.
  const audited = !tool || !tool.annotations.readOnlyHint;
  try {
    if (!tool || !mayCall(caller, `tool ${name}`)) throw new AppError(tool ? "forbidden" : "not_found", `Cannot call tool "${name}": ${tool ? "not allowed for this key" : "no such tool"}`);
    const input = validate(tool.input, args ?? {}, name.replaceAll("_", " "));
    const out = await tool.run(ctx, input, caller);
    if (audited) await recordAudit(ctx, { caller, action: name, target: auditTarget(input), outcome: "ok" });
    return { content: [{ type: "text", text: out.text }], ...(out.data ? { structuredContent: out.data } : {}) };
  } catch (err) {
    if (!(err instanceof AppError)) ctx.log.error("Internal error", { requestId, tool: name, error: String((err as Error)?.stack ?? err) });
    if (audited) await recordAudit(ctx, { caller, action: name, target: auditTarget(args), outcome: err instanceof AppError ? err.code : "internal" });
    return toToolError(err, requestId);
  }
}

/** A low-level SDK Server exposing `tools` to `caller` (the same server serves HTTP and stdio). */
export function createMcpServer(ctx: Ctx, tools: ToolDef[], caller: Caller, validator = new AjvJsonSchemaValidator()): Server {
  const byName = new Map(tools.map((t) => [t.name, t]));
  const listing = listTools(tools);
  const server = new Server(SERVER_INFO, { capabilities: { tools: {} }, instructions: INSTRUCTIONS, jsonSchemaValidator: validator });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: listing.filter((t) => mayCall(caller, `tool ${t.name}`)) }));
  server.setRequestHandler(CallToolRequestSchema, (req) => callTool(ctx, byName, caller, req.params.name, req.params.arguments));
  return server;
}

const listings = new WeakMap<ToolDef[], ListedTool[]>();
// JSON Schemas are computed once per tool list, not per request.
function listTools(tools: ToolDef[]): ListedTool[] {
  let listing = listings.get(tools);
  if (!listing) {
    listing = tools.map((t) => ({
      name: t.name,
      title: t.title,
      description: t.description,
      inputSchema: jsonSchema(t.input),
      ...(t.output ? { outputSchema: jsonSchema(t.output) } : {}),
      annotations: { title: t.title, ...t.annotations },
    }));
    listings.set(tools, listing);
  }
  return listing;
}

/**
 * Hono handler for /mcp: stateless streamable HTTP (a new Server and transport per request, so any
 * instance can answer any request), JSON responses, one shared JSON Schema validator.
 */
export function mcpHandler(tools: ToolDef[]): (c: Context<AppEnv>) => Promise<Response> {
  const validator = new AjvJsonSchemaValidator();
  return async (c) => {
    if (c.req.method !== "POST") {
      return c.json({ error: { code: "method_not_allowed", message: "This MCP endpoint is stateless: use POST" } }, 405, { Allow: "POST" });
    }
    const server = createMcpServer(c.get("ctx"), tools, c.get("caller"), validator);
    const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    await server.connect(transport);
    try {
      return await transport.handleRequest(c.req.raw);
    } finally {
      void server.close();
    }
  };
}
