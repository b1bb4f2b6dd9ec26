/**
 * GET /openapi.json: an OpenAPI 3.1 description of every HTTP route. Request inputs come from the very
 * valibot schemas the routes validate with (converted by @valibot/to-json-schema); answers are described
 * here with valibot too, and test/openapi.test.ts checks every route is here and real answers match.
 * Who may call each route comes from features/access (its RULES), so the two cannot disagree.
 */
import { toJsonSchema } from "@valibot/to-json-schema";
import { Hono } from "hono";
import * as v from "valibot";
import type { Feature } from "../../shared/feature.ts";
import type { AppEnv } from "../../shared/http.ts";
import { REGISTRY_VERSION } from "../../shared/mcp.ts";
import { mayCall, ruleOf } from "../access/access.ts";
import { UserServiceInput } from "../credentials/credentials.ts";
import { ListInput } from "../registry_api/servers.ts";
import { PromptForRoleInput, ToolsForRoleInput } from "../roles/roles.ts";
import { RegisterUserInput, UserIdInput } from "../users/users.ts";

// The registry's error body, and the official registry API's (under /v0.1/).
const ErrorBody = v.object({ error: v.object({ code: v.string(), message: v.string() }) });
const OfficialError = v.object({ error: v.string() });
const JsonRpc = v.looseObject({ jsonrpc: v.literal("2.0") });
const ServerEntry = v.object({
  server: v.looseObject({ name: v.string(), description: v.string(), version: v.string(), remotes: v.optional(v.array(v.looseObject({ type: v.string(), url: v.string() }))) }),
  _meta: v.record(v.string(), v.unknown()),
});

type Answer = { description: string; schema?: v.GenericSchema; type?: "json" | "html" | "text"; example?: unknown };
type Operation = {
  method: "get" | "post";
  path: string;
  summary: string;
  description?: string;
  tag: string;
  /** The route's own input schema: query parameters (GET) or a JSON body (POST); "both" reads either. */
  input?: v.GenericSchema;
  inputIn?: "query" | "body" | "both";
  params?: Record<string, string>;
  responses: Record<number, Answer>;
};

const errors = (...codes: number[]): Record<number, Answer> => Object.fromEntries(codes.map((code) => [code, { description: ERROR_MEANING[code], schema: ErrorBody }]));
const ERROR_MEANING: Record<number, string> = {
  400: "Invalid input: the message names each bad field",
  401: "No key, or an unknown one (WWW-Authenticate: Bearer)",
  403: "The key may not call this route, or a browser request from another origin",
  404: "Not found",
  413: "The request body is over 1 MiB",
  503: "The database is busy or unreachable (Retry-After: 1)",
};
const official = (answers: Record<number, Answer>) => ({
  ...answers,
  ...Object.fromEntries(Object.entries(errors(400, 401, 403, 404)).map(([code, a]) => [code, { ...a, schema: OfficialError }])),
});

const OPERATIONS: Operation[] = [
  {
    method: "get",
    path: "/health",
    tag: "operations",
    summary: "Liveness: the process serves",
    responses: {
      200: { description: "Serving", schema: v.object({ status: v.literal("healthy"), service: v.literal("mcp-server") }), example: { status: "healthy", service: "mcp-server" } },
    },
  },
  {
    method: "get",
    path: "/ready",
    tag: "operations",
    summary: "Readiness: the database answers within a second",
    responses: {
      200: { description: "Ready", schema: v.object({ status: v.literal("ready") }), example: { status: "ready" } },
      503: { description: "Not ready, and why", schema: v.object({ status: v.literal("unavailable"), reason: v.string() }) },
    },
  },
  {
    method: "get",
    path: "/openapi.json",
    tag: "operations",
    summary: "This document",
    responses: { 200: { description: "OpenAPI 3.1", schema: v.looseObject({ openapi: v.string() }) } },
  },
  {
    method: "get",
    path: "/metrics",
    tag: "operations",
    summary: "Prometheus metrics of this process (admin key or REGISTRY_METRICS_KEY)",
    responses: { 200: { description: "Prometheus text exposition format 0.0.4", type: "text" }, ...errors(401, 403) },
  },
  {
    method: "get",
    path: "/list_services",
    tag: "agents",
    summary: "Every service: transport and endpoint",
    responses: {
      200: {
        description: "Services by name",
        schema: v.object({ services: v.record(v.string(), v.object({ transport: v.picklist(["streamable_http", "sse"]), url: v.string() })) }),
        example: { services: { weather: { transport: "streamable_http", url: "http://127.0.0.1:3001/mcp" } } },
      },
      ...errors(401, 403, 503),
    },
  },
  ...(["get", "post"] as const).map(
    (method): Operation => ({
      method,
      path: "/token",
      tag: "agents",
      summary: "A user's credential for a service (audited)",
      description:
        method === "get"
          ? "The fields come as query parameters, or, as the predecessor's agents send them, as a JSON body on GET (GET with a body): both are read."
          : "The fields come as a JSON body (or query parameters).",
      input: UserServiceInput,
      inputIn: "both",
      responses: {
        200: {
          description: "The token and how to send it (Authorization: <method_authorization> <token>), or Ok for a service that needs none",
          schema: v.union([v.object({ token: v.string(), method_authorization: v.string() }), v.object({ status: v.literal("Ok") })]),
          example: { token: "ann-token-1", method_authorization: "Bearer" },
        },
        ...errors(400, 401, 403, 404, 413, 503),
      },
    }),
  ),
  {
    method: "post",
    path: "/role_for_user",
    tag: "agents",
    summary: "A user's role (an unknown user is recorded without one)",
    input: UserIdInput,
    inputIn: "body",
    responses: { 200: { description: 'The role\'s name, or ""', schema: v.object({ role: v.string() }), example: { role: "staff" } }, ...errors(400, 401, 403, 413, 503) },
  },
  {
    method: "post",
    path: "/tools_for_role",
    tag: "agents",
    summary: "The tools a role may use (held tools left out)",
    input: ToolsForRoleInput,
    inputIn: "body",
    responses: {
      200: {
        description: "Tools by service",
        schema: v.object({ tools: v.array(v.object({ id: v.number(), name: v.string(), description: v.string(), service_name: v.string() })) }),
        example: { tools: [{ id: 1, name: "forecast", description: "Forecast for a city", service_name: "weather" }] },
      },
      ...errors(400, 401, 403, 404, 413, 503),
    },
  },
  {
    method: "post",
    path: "/system_prompt_for_role",
    tag: "agents",
    summary: 'A role\'s system prompt ("" for no role)',
    input: PromptForRoleInput,
    inputIn: "body",
    responses: {
      200: { description: "The prompt", schema: v.object({ default_system_prompt: v.string() }), example: { default_system_prompt: "You help the staff." } },
      ...errors(400, 401, 403, 404, 413, 503),
    },
  },
  {
    method: "post",
    path: "/register_user",
    tag: "admin",
    summary: "Record a user, optionally with a role (admin)",
    input: RegisterUserInput,
    inputIn: "body",
    responses: {
      200: { description: "Done", schema: v.object({ status: v.literal("user registered") }), example: { status: "user registered" } },
      ...errors(400, 401, 403, 404, 413, 503),
    },
  },
  {
    method: "get",
    path: "/list_users",
    tag: "admin",
    summary: "Every user (admin)",
    responses: { 200: { description: "Users", schema: v.object({ users: v.array(v.object({ user: v.unknown() })) }) }, ...errors(401, 403, 503) },
  },
  {
    method: "get",
    path: "/v0.1/servers",
    tag: "registry API",
    summary: "The official MCP Registry API: servers (filtered to a user's with a user key or X-Registry-User)",
    input: ListInput,
    inputIn: "query",
    responses: official({
      200: {
        description: "A page of servers",
        schema: v.object({ servers: v.array(ServerEntry), metadata: v.object({ nextCursor: v.optional(v.string()), count: v.number() }) }),
        example: { servers: [], metadata: { count: 0 } },
      },
    }),
  },
  // The server name URL-encoded in one segment, as the specification has it, or in its two parts.
  ...[
    ["{serverName}", { serverName: "URL-encoded server name, e.g. local.mcp-registry%2Fweather" }],
    ["{namespace}/{name}", { namespace: "The name's namespace, e.g. local.mcp-registry", name: "The rest of the name, e.g. weather" }],
  ].flatMap(([name, params]): Operation[] => [
    {
      method: "get",
      path: `/v0.1/servers/${name}/versions`,
      tag: "registry API",
      summary: "A server's versions (the registry keeps one)",
      params: params as Record<string, string>,
      responses: official({ 200: { description: "Its versions", schema: v.object({ servers: v.array(ServerEntry), metadata: v.object({ count: v.number() }) }) } }),
    },
    {
      method: "get",
      path: `/v0.1/servers/${name}/versions/{version}`,
      tag: "registry API",
      summary: "One version of a server (latest: the current one)",
      params: { ...(params as Record<string, string>), version: "A version, or latest" },
      responses: official({ 200: { description: "The server", schema: ServerEntry } }),
    },
  ]),
  ...(["/mcp", "/gateway/mcp"] as const).map(
    (path): Operation => ({
      method: "post",
      path,
      tag: "MCP",
      summary: path === "/mcp" ? "The registry's MCP tools (stateless streamable HTTP, JSON answers)" : "The gateway: a user's tools, each call with the user's own credential",
      description:
        path === "/mcp"
          ? "A JSON-RPC message of MCP 2025-11-25; each key lists only the tools its rules allow. GET and DELETE answer 405."
          : "A JSON-RPC message of MCP 2025-11-25, with a user key, or an agent key and X-Registry-User. GET and DELETE answer 405.",
      responses: { 200: { description: "The JSON-RPC answer", schema: JsonRpc }, 202: { description: "A notification was accepted" }, ...errors(400, 401, 403, 413) },
    }),
  ),
  ...(["get", "post"] as const).map(
    (method): Operation => ({
      method,
      path: "/connect/{code}",
      tag: "gateway",
      summary: method === "get" ? "The connect page of a one-time link (HTML form)" : "Store the user's token through a one-time link (form field token)",
      params: { code: "The link's one-time code" },
      responses: {
        200: { description: method === "get" ? "The form" : "Stored", type: "html" },
        ...(method === "post" ? ({ 400: { description: "An empty or unfit token: the form again, with why", type: "html" } } as Record<number, Answer>) : {}),
        404: { description: "Used, expired or mistyped link", type: "html" },
      },
    }),
  ),
];

// The web console's routes: HTML for people, described in docs/console.md; listed so the document has every route.
const CONSOLE_PAGES = ["", "/login", "/services", "/services/{name}", "/services/{name}/remove", "/matrix", "/roles", "/users", "/changes", "/keys", "/audit"];
const CONSOLE_POSTS = ["/login", "/logout", "/do/{tool}", "/matrix"];
const CONSOLE_STATIC = ["console.css", "console.js", "icon.svg"];
const consoleOperations: Operation[] = [
  ...CONSOLE_PAGES.map(
    (p): Operation => ({
      method: "get",
      path: `/console${p}`,
      tag: "console",
      summary: "A console page (session cookie; without one: 303 to /console/login)",
      responses: { 200: { description: "The page", type: "html" }, 303: { description: "To the login page" } },
    }),
  ),
  ...CONSOLE_POSTS.map(
    (p): Operation => ({
      method: "post",
      path: `/console${p}`,
      tag: "console",
      summary: "A console form (session cookie and CSRF token)",
      responses: {
        303: { description: "To the next page" },
        401: { description: "No session", type: "html" },
        403: { description: "CSRF token missing or wrong, or another origin", type: "html" },
      },
    }),
  ),
  ...CONSOLE_STATIC.map(
    (f): Operation => ({ method: "get", path: `/console/static/${f}`, tag: "console", summary: "The console's own file", responses: { 200: { description: f, type: "text" } } }),
  ),
];

const schemaOf = (schema: v.GenericSchema) => {
  const { $schema: _, ...rest } = toJsonSchema(schema, { errorMode: "ignore" }) as Record<string, unknown>;
  return rest;
};

// The parameters and body of an operation from its input schema.
function inputOf(op: Operation) {
  const path = Object.entries(op.params ?? {}).map(([name, description]) => ({ name, in: "path", required: true, description, schema: { type: "string" } }));
  if (!op.input) return { parameters: path };
  const json = schemaOf(op.input) as { properties?: Record<string, unknown>; required?: string[] };
  const query =
    op.inputIn === "body" ? [] : Object.entries(json.properties ?? {}).map(([name, schema]) => ({ name, in: "query", required: (json.required ?? []).includes(name), schema }));
  const body = op.inputIn === "query" ? undefined : { required: op.method === "post" && op.inputIn === "body", content: { "application/json": { schema: json } } };
  return { parameters: [...path, ...query], ...(body ? { requestBody: body } : {}) };
}

const MEDIA = { json: "application/json", html: "text/html", text: "text/plain" } as const;

function operationOf(op: Operation) {
  // Who may call it, as the access layer decides it for a concrete path.
  const open = mayCall({ principal: "anonymous", label: "" }, ruleOf(op.method.toUpperCase(), op.path.replace(/\{[^}]+\}/g, "x")));
  const responses = Object.fromEntries(
    Object.entries(op.responses).map(([status, a]) => [
      status,
      {
        description: a.description,
        ...(a.schema || a.type
          ? { content: { [MEDIA[a.type ?? "json"]]: { ...(a.schema ? { schema: schemaOf(a.schema) } : {}), ...(a.example !== undefined ? { example: a.example } : {}) } } }
          : {}),
      },
    ]),
  );
  return { tags: [op.tag], summary: op.summary, ...(op.description ? { description: op.description } : {}), ...inputOf(op), security: open ? [] : [{ bearer: [] }], responses };
}

/** The OpenAPI document for a registry reached at `url`. */
function openapiDocument(url: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of [...OPERATIONS, ...consoleOperations]) {
    paths[op.path] ??= {};
    paths[op.path][op.method] = operationOf(op);
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "MCP Registry",
      version: REGISTRY_VERSION,
      description: "Registry and access broker for MCP services. MCP tools are on POST /mcp (see their tools/list); this document describes the HTTP routes.",
    },
    servers: [{ url }],
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "An admin or agent key, or for the gateway and the registry API a user key (mcpr_user_…)" } },
    },
    paths,
  };
}

// Built once per registry address: the document is the same for every request.
const built = new Map<string, Record<string, unknown>>();

const routes = new Hono<AppEnv>().get("/openapi.json", (c) => {
  const url = c.get("ctx").publicUrl;
  if (!built.has(url)) built.set(url, openapiDocument(url));
  return c.json(built.get(url)!);
});

/** The HTTP API's description. */
export const openapi: Feature = { name: "openapi", routes };
