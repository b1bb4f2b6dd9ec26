/** MCP plumbing: defineTool over the low-level SDK Server, and the stateless streamable HTTP endpoint. */
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { CallToolRequestSchema, type CallToolResult, ErrorCode, ListToolsRequestSchema, type Tool as ListedTool, type ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { toJsonSchema } from "@valibot/to-json-schema";
import type { Context } from "hono";
import type * as v from "valibot";
import { type Caller, mayCall, type Principal } from "./access.ts";
import { auditTarget, type PendingAudit, recordAudit } from "./audit.ts";
import type { Ctx } from "./context.ts";
import { AppError, describeForLog, recognizeError, toToolError } from "./errors.ts";
import type { AppEnv } from "./http.ts";
import { MAX_NESTING, nestedWithin, validate } from "./validate.ts";

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
  /** `audit`: the success event of this call, which a change may write in its own transaction (see PendingAudit). */
  run(ctx: Ctx, input: v.InferOutput<S>, audit: PendingAudit): Promise<ToolOutput>;
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
  const tool = tools.get(name);
  // Every call of a tool that changes something is audited, allowed or not, succeeded or not.
  const audited = !tool || !tool.annotations.readOnlyHint;
  try {
    if (!tool || !mayCall(caller, `tool ${name}`)) throw new AppError(tool ? "forbidden" : "not_found", `Cannot call tool "${name}": ${tool ? "not allowed for this key" : "no such tool"}`);
    const input = validate(tool.input, args ?? {}, name.replaceAll("_", " "));
    const success: PendingAudit = { entry: { caller, action: name, target: auditTarget(input), outcome: "ok" }, written: false };
    const out = await tool.run(ctx, input, success);
    if (audited && !success.written) await recordAudit(ctx, success.entry);
    return { content: [{ type: "text", text: out.text }], ...(out.data ? { structuredContent: out.data } : {}) };
  } catch (thrown) {
    const err = recognizeError(thrown);
    // The id ties the caller's "Internal error (request …)" to the log line; only errors need one.
    const requestId = crypto.randomUUID().slice(0, 8);
    if (!(err instanceof AppError)) ctx.log.error("Internal error", { requestId, tool: name, error: describeForLog(err) });
    if (audited) await recordAudit(ctx, { caller, action: name, target: auditTarget(args), outcome: err instanceof AppError ? err.code : "internal" });
    return toToolError(err, requestId);
  }
}

/** A low-level SDK Server exposing `tools` to `caller` (the same server serves HTTP and stdio). */
export function createMcpServer(ctx: Ctx, tools: ToolDef[], caller: Caller, validator = new AjvJsonSchemaValidator()): Server {
  const { byName, visible } = catalogue(tools);
  // logging: clients may set a level (the SDK answers logging/setLevel); the registry's own logs go to stderr.
  const server = new Server(SERVER_INFO, { capabilities: { tools: {}, logging: {} }, instructions: INSTRUCTIONS, jsonSchemaValidator: validator });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: visible[caller.principal] }));
  server.setRequestHandler(CallToolRequestSchema, (req) => callTool(ctx, byName, caller, req.params.name, req.params.arguments));
  return server;
}

/**
 * Connects `server` to `transport`, with every incoming message checked before the SDK parses it: nesting
 * within MAX_NESTING, and a tools/call whose params and arguments are objects. A refused call is answered
 * with JSON-RPC -32602 and a plain message (the SDK would answer -32603 with its raw validation dump) and audited.
 */
export async function connectGuarded(ctx: Ctx, server: Server, transport: Transport, caller: Caller): Promise<void> {
  await server.connect(transport);
  const deliver = transport.onmessage!;
  transport.onmessage = (message, extra) => {
    const refusal = refuseMessage(message);
    if (!refusal) return deliver(message, extra);
    const m = message as { id?: unknown; method?: unknown; params?: { name?: unknown } };
    const name = typeof m.params?.name === "string" ? m.params.name.slice(0, 128) : String(m.method ?? "request").slice(0, 64);
    void recordAudit(ctx, { caller, action: name, target: "", outcome: "invalid_input", detail: refusal });
    if (typeof m.id === "string" || typeof m.id === "number") void transport.send({ jsonrpc: "2.0", id: m.id, error: { code: ErrorCode.InvalidParams, message: refusal } });
  };
}

// Why a message is refused before the SDK sees it, or null.
function refuseMessage(message: unknown): string | null {
  if (!nestedWithin(message)) return `Invalid params: the message is nested more than ${MAX_NESTING} levels deep`;
  const m = message as { method?: unknown; params?: unknown };
  if (m.method !== "tools/call") return null;
  const params = m.params as { name?: unknown; arguments?: unknown } | undefined;
  if (!isObject(params) || typeof params.name !== "string") return 'Invalid params: tools/call needs params {"name": string, "arguments": object}';
  if (params.arguments !== undefined && !isObject(params.arguments)) {
    const got = params.arguments === null ? "null" : Array.isArray(params.arguments) ? "an array" : `a ${typeof params.arguments}`;
    return `Invalid params: the arguments of tool "${params.name.slice(0, 128)}" must be an object, not ${got}`;
  }
  return null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

type Catalogue = { byName: Map<string, ToolDef>; visible: Record<Principal, ListedTool[]> };
const catalogues = new WeakMap<ToolDef[], Catalogue>();
// The tool map, the JSON Schemas and what each principal may see: computed once per tool list, not per request.
function catalogue(tools: ToolDef[]): Catalogue {
  let found = catalogues.get(tools);
  if (!found) {
    const listing: ListedTool[] = tools.map((t) => ({
      name: t.name,
      title: t.title,
      description: t.description,
      inputSchema: jsonSchema(t.input),
      ...(t.output ? { outputSchema: jsonSchema(t.output) } : {}),
      annotations: { title: t.title, ...t.annotations },
    }));
    const seenBy = (principal: Principal) => listing.filter((t) => mayCall({ principal, label: principal }, `tool ${t.name}`));
    found = { byName: new Map(tools.map((t) => [t.name, t])), visible: { anonymous: seenBy("anonymous"), agent: seenBy("agent"), admin: seenBy("admin") } };
    catalogues.set(tools, found);
  }
  return found;
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
    await connectGuarded(c.get("ctx"), server, transport, c.get("caller"));
    // The body is read here, directly (@hono/node-server), and handed over parsed: the transport would
    // read it as a stream of a whole new Request. Not JSON: the transport reports the parse error itself.
    let parsedBody: unknown;
    try {
      parsedBody = JSON.parse(await c.req.text());
    } catch { /* left to the transport */ }
    // No server.close() afterwards: with JSON responses every handler has finished when the response is
    // ready, so closing would only abort finished work (an AbortError and an McpError built per request,
    // about a tenth of a tool call's cost); the server and transport are garbage once this returns.
    return transport.handleRequest(c.req.raw, { parsedBody });
  };
}
