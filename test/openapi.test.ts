/**
 * GET /openapi.json against the registry it describes: every route of the app is in it and nothing else,
 * its schemas compile and its examples validate, who may call a route is what the access layer does, and
 * real answers of a running registry (successes and refusals) match the schemas documented for their status.
 */
import { CallToolRequestSchema, ListToolsRequestSchema } from "@modelcontextprotocol/sdk/types.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createApp } from "../registry.ts";
import { call, startTestMcpServer, startTestRegistry, type TestRegistry } from "./helpers.ts";

const ADMIN = "admin-key-0123456789abcdef";
const AGENT = "agent-key-0123456789abcdef";

type Operation = {
  security: unknown[];
  parameters: { name: string; in: string; required: boolean }[];
  requestBody?: { content: Record<string, { schema: object }> };
  responses: Record<string, { content?: Record<string, { schema?: object; example?: unknown }> }>;
};
type Document = { openapi: string; paths: Record<string, Record<string, Operation>>; components: { securitySchemes: Record<string, unknown> } };

const ajv = new AjvJsonSchemaValidator();
const problems = (schema: object, value: unknown) => {
  const result = ajv.getValidator(schema as never)(value);
  return result.valid ? null : result.errorMessage;
};

describe("GET /openapi.json", () => {
  let reg: TestRegistry;
  let doc: Document;
  let service: Awaited<ReturnType<typeof startTestMcpServer>>;
  beforeAll(async () => {
    [reg, service] = await Promise.all([
      startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN, REGISTRY_AGENT_KEYS: AGENT }),
      startTestMcpServer({
        setup(server) {
          server.setRequestHandler(ListToolsRequestSchema, () => ({ tools: [{ name: "forecast", description: "Forecast", inputSchema: { type: "object" as const } }] }));
          server.setRequestHandler(CallToolRequestSchema, () => ({ content: [{ type: "text", text: "sunny" }] }));
        },
      }),
    ]);
    const res = await reg.http("/openapi.json");
    expect(res.status).toBe(200);
    doc = (await res.json()) as Document;
  });
  afterAll(async () => {
    await reg?.stop();
    await service?.stop();
  });

  it("is public OpenAPI 3.1 with a bearer scheme", () => {
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
  });

  it("has every route of the app, and no route the app does not have", () => {
    const app = createApp(reg.ctx, reg.keys);
    const routes = new Set(
      app.routes.filter((r) => r.method !== "ALL" && r.path !== "/*" && !r.path.endsWith("/*")).map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, "{$1}")}`),
    );
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path.replace(/\{namespace\}\/\{name\}/, "{ns}/{name}")}`)));
    // /mcp and /gateway/mcp answer every method themselves (405 but POST): documented as POST.
    for (const path of ["/mcp", "/gateway/mcp"]) routes.add(`post ${path}`);
    expect(
      [...routes].filter((r) => !documented.has(r)),
      "routes missing from the document",
    ).toEqual([]);
    expect(
      [...documented].filter((r) => !routes.has(r)),
      "documented routes the app does not have",
    ).toEqual([]);
  });

  it("compiles every schema and validates every example", () => {
    let examples = 0;
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        expect(op.responses, `${method} ${path}`).toBeTypeOf("object");
        for (const [status, answer] of Object.entries(op.responses)) {
          for (const media of Object.values(answer.content ?? {})) {
            if (!media.schema) continue;
            if (media.example !== undefined) {
              expect(problems(media.schema, media.example), `${method} ${path} ${status} example`).toBeNull();
              examples++;
            }
          }
        }
        for (const media of Object.values(op.requestBody?.content ?? {})) expect(() => ajv.getValidator(media.schema as never)).not.toThrow();
      }
    }
    expect(examples).toBeGreaterThan(8);
  });

  it("says which routes need a key exactly as the access layer decides", async () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (path.startsWith("/console")) continue;
      for (const [method, op] of Object.entries(ops)) {
        const concrete = path.replace(/\{[^}]+\}/g, "x");
        const res = await reg.http(concrete, { method: method.toUpperCase(), ...(method === "post" ? { headers: { "content-type": "application/json" }, body: "{}" } : {}) });
        const open = op.security.length === 0;
        expect(res.status === 401, `${method} ${path}: documented ${open ? "open" : "with a key"}, answered ${res.status}`).toBe(!open);
      }
    }
  });

  it("describes the real answers of a running registry, successes and refusals", async () => {
    const admin = await reg.client(ADMIN);
    await call(admin, "add_service", { service_name: "weather", endpoint: service.url, description: "Weather", requires_authorization: true, method_authorization: "Bearer" });
    await call(admin, "create_role", { role_name: "staff", default_system_prompt: "Help." });
    await call(admin, "attach_role_to_tool", { tool_id: 1, role_name: "staff" });
    await call(admin, "assign_role_to_user", { user_id: "ann", role_name: "staff" });
    await call(admin, "authorize_user_to_service", { service_name: "weather", user_id: "ann", token: "ann-token" });
    const json = { "content-type": "application/json" };
    const cases: [string, string, RequestInit & { key?: string }][] = [
      ["get", "/health", {}],
      ["get", "/ready", {}],
      ["get", "/list_services", { key: AGENT }],
      ["get", "/list_services", {}],
      ["get", "/token?service_name=weather&user_id=ann", { key: AGENT }],
      ["get", "/token?service_name=weather", { key: AGENT }],
      ["post", "/token", { key: AGENT, method: "POST", headers: json, body: '{"service_name":"weather","user_id":"ann"}' }],
      ["post", "/token", { key: AGENT, method: "POST", headers: json, body: '{"service_name":"nope","user_id":"ann"}' }],
      ["post", "/role_for_user", { key: AGENT, method: "POST", headers: json, body: '{"user_id":"ann"}' }],
      ["post", "/tools_for_role", { key: AGENT, method: "POST", headers: json, body: '{"role":"staff"}' }],
      ["post", "/system_prompt_for_role", { key: AGENT, method: "POST", headers: json, body: '{"role":"staff"}' }],
      ["post", "/system_prompt_for_role", { key: AGENT, method: "POST", headers: json, body: "not json" }],
      ["post", "/register_user", { key: ADMIN, method: "POST", headers: json, body: '{"user_id":"bob"}' }],
      ["post", "/register_user", { key: AGENT, method: "POST", headers: json, body: '{"user_id":"bob"}' }],
      ["get", "/list_users", { key: ADMIN }],
      ["get", "/v0.1/servers", { key: AGENT }],
      ["get", "/v0.1/servers?limit=0", { key: AGENT }],
      ["get", "/v0.1/servers", {}],
      ["get", "/v0.1/servers/local.mcp-registry%2Fweather/versions", { key: AGENT }],
      ["get", "/v0.1/servers/local.mcp-registry%2Fweather/versions/latest", { key: AGENT }],
      ["get", "/v0.1/servers/local.mcp-registry/weather/versions/latest", { key: AGENT }],
      ["get", "/v0.1/servers/local.mcp-registry%2Fnope/versions/latest", { key: AGENT }],
    ];
    for (const [method, url, init] of cases) {
      const res = await reg.http(url, init);
      const path = documentedPath(doc, url.split("?")[0]);
      const answer = doc.paths[path]?.[method]?.responses[String(res.status)];
      expect(answer, `${method} ${url}: status ${res.status} is not documented`).toBeDefined();
      const schema = answer!.content?.["application/json"]?.schema;
      expect(schema, `${method} ${url} ${res.status} has a schema`).toBeDefined();
      expect(problems(schema!, await res.json()), `${method} ${url} ${res.status}`).toBeNull();
    }
  });
});

// The documented path a concrete URL path falls under.
function documentedPath(doc: Document, path: string): string {
  return Object.keys(doc.paths).find((p) => new RegExp(`^${p.replace(/\{[^}]+\}/g, "[^/]+").replaceAll(".", "\\.")}$`).test(path)) ?? path;
}
