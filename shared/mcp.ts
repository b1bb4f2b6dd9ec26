/**
 * MCP plumbing, without policy: tool definitions (defineTool) and their listing, a low-level SDK Server over
 * them, the message guard, and the stateless streamable HTTP endpoint. Who may call what, and the audit of
 * each call, are features/access's and features/audit's: the registry passes them in.
 */
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import { CallToolRequestSchema, type CallToolResult, ErrorCode, ListToolsRequestSchema, type Tool as ListedTool, type ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { toJsonSchema } from "@valibot/to-json-schema";
import type { Context } from "hono";
import type * as v from "valibot";
import type { Caller, Ctx, PendingAudit } from "./context.ts";
import type { AppEnv } from "./http.ts";
import { MAX_NESTING, nestedWithin } from "./validate.ts";

/** The registry's version, as its MCP servers and the registry API show it. */
export const REGISTRY_VERSION = "0.1.0";
const SERVER_INFO = { name: "mcp-registry", version: REGISTRY_VERSION };
const INSTRUCTIONS = "Registry of MCP services: list services and their tools, manage roles, users and user credentials.";

/** What a tool returns: a short sentence or compact JSON as text, and the same data structured. */
type ToolOutput = { text: string; data?: Record<string, unknown> };

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

/** How a server answers tools/call: the tool's name and the arguments as sent. */
export type CallHandler = (name: string, args: unknown) => Promise<CallToolResult>;

/** A low-level SDK Server listing `listed` and answering tools/call with `call` (the same server serves HTTP and stdio). */
export function createMcpServer(listed: ListedTool[], call: CallHandler, validator = new AjvJsonSchemaValidator()): Server {
  // logging: clients may set a level (the SDK answers logging/setLevel); the registry's own logs go to stderr.
  const server = new Server(SERVER_INFO, { capabilities: { tools: {}, logging: {} }, instructions: INSTRUCTIONS, jsonSchemaValidator: validator });
  server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: listed }));
  server.setRequestHandler(CallToolRequestSchema, (req) => call(req.params.name, req.params.arguments));
  return server;
}

/** The tools/list entries of `tools` (JSON Schemas built once per tool list). */
export function listTools(tools: ToolDef[]): ListedTool[] {
  let listed = listings.get(tools);
  if (!listed) {
    listed = tools.map((t) => ({
      name: t.name,
      title: t.title,
      description: t.description,
      inputSchema: jsonSchema(t.input),
      ...(t.output ? { outputSchema: jsonSchema(t.output) } : {}),
      annotations: { title: t.title, ...t.annotations },
    }));
    listings.set(tools, listed);
  }
  return listed;
}
const listings = new WeakMap<ToolDef[], ListedTool[]>();

/**
 * Connects `server` to `transport`, with every incoming message checked before the SDK parses it: nesting
 * within MAX_NESTING, and a tools/call whose params and arguments are objects. A refused call is answered
 * with JSON-RPC -32602 and a plain message (the SDK would answer -32603 with its raw validation dump), and
 * `onRefused` hears of it (the registry audits it).
 */
export async function connectGuarded(server: Server, transport: Transport, onRefused: (action: string, reason: string) => void): Promise<void> {
  await server.connect(transport);
  const deliver = transport.onmessage!;
  transport.onmessage = (message, extra) => {
    const refusal = refuseMessage(message);
    if (!refusal) return deliver(message, extra);
    const m = message as { id?: unknown; method?: unknown; params?: { name?: unknown } };
    onRefused(typeof m.params?.name === "string" ? m.params.name.slice(0, 128) : String(m.method ?? "request").slice(0, 64), refusal);
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

/**
 * Hono handler for /mcp: stateless streamable HTTP (a new Server and transport per request, so any
 * instance can answer any request), JSON responses, one shared JSON Schema validator.
 */
export function mcpHandler(serve: McpServing): (c: Context<AppEnv>) => Promise<Response> {
  const validator = new AjvJsonSchemaValidator();
  return async (c) => {
    if (c.req.method !== "POST") return notPost(c);
    const { ctx, caller } = { ctx: c.get("ctx"), caller: c.get("caller") };
    return answerMcp(c, serve.server(ctx, caller, validator), (action, reason) => serve.refused(ctx, caller, action, reason), await readMcpBody(c));
  };
}

/** The answer of a stateless MCP endpoint to any method but POST. */
export function notPost(c: Context<AppEnv>): Response {
  return c.json({ error: { code: "method_not_allowed", message: "This MCP endpoint is stateless: use POST" } }, 405, { Allow: "POST" });
}

/**
 * The body of an MCP request, parsed (undefined when it is not JSON: the transport reports the parse error
 * itself). Read here, directly (@hono/node-server): the transport would read it as a stream of a whole new Request.
 */
export async function readMcpBody(c: Context<AppEnv>): Promise<unknown> {
  try {
    return JSON.parse(await c.req.text());
  } catch {
    return undefined;
  }
}

/** Answers one stateless streamable HTTP request with `server` (a new transport, JSON responses), every message guarded (connectGuarded). */
export async function answerMcp(c: Context<AppEnv>, server: Server, onRefused: (action: string, reason: string) => void, parsedBody: unknown): Promise<Response> {
  const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
  await connectGuarded(server, transport, onRefused);
  // No server.close() afterwards: with JSON responses every handler has finished when the response is
  // ready, so closing would only abort finished work (an AbortError and an McpError built per request,
  // about a tenth of a tool call's cost); the server and transport are garbage once this returns.
  return transport.handleRequest(c.req.raw, { parsedBody });
}

/** What an MCP endpoint serves a caller: a server for one request, and what to do with a refused message. */
export type McpServing = {
  server(ctx: Ctx, caller: Caller, validator: AjvJsonSchemaValidator): Server;
  refused(ctx: Ctx, caller: Caller, action: string, reason: string): void;
  /** One tool call as an MCP tools/call makes it (rules, validation, audit), for another surface: the web console. */
  call(ctx: Ctx, caller: Caller, name: string, args: unknown): Promise<CallToolResult>;
  /** The tools a caller of this principal lists, as tools/list shows them. */
  listed(principal: Caller["principal"]): ListedTool[];
};
