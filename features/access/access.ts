/**
 * Access: the one place "who may call what" is decided. Who is calling (keys, constant-time), the table of
 * rules for every MCP tool and HTTP route, the browser rules (Host, Origin), and the MCP tool pipeline
 * (rule, validation, audited run).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import type { Context, MiddlewareHandler } from "hono";
import type { Config } from "../../shared/config.ts";
import type { Caller, Ctx, Principal } from "../../shared/context.ts";
import { AppError, describeForLog, recognizeError, toToolError } from "../../shared/errors.ts";
import type { AppEnv } from "../../shared/http.ts";
import { createMcpServer, listTools, type McpServing, type ToolDef } from "../../shared/mcp.ts";
import { UserId } from "../../shared/names.ts";
import { validate } from "../../shared/validate.ts";
import { audited, auditTarget, recordAudit } from "../audit/audit.ts";
import { countToolCall, outcomeOf } from "../metrics/metrics.ts";
import { isUserKey, resolveUserKey } from "../user_keys/user_keys.ts";

export type { Caller, Principal };

// A user (a user key) ranks above anonymous only for the gateway: it is refused everywhere else (accessMiddleware).
const RANK: Record<Principal, number> = { anonymous: 0, user: 1, agent: 2, admin: 3 };

/**
 * The least principal allowed for each MCP tool ("tool <name>") and HTTP route ("<METHOD> <path>").
 * Anything not listed needs admin.
 */
const RULES: Record<string, Principal> = {
  "GET /health": "anonymous",
  "GET /ready": "anonymous",
  // The description of the HTTP API (features/openapi): public, as the routes it describes are known anyway.
  "GET /openapi.json": "anonymous",
  // The connect page: its one-time code is the credential (features/gateway/connect.ts).
  CONNECT: "anonymous",
  // The web console: its own login and session cookie (features/console); the browser rules apply as everywhere.
  CONSOLE: "anonymous",
  // The gateway: a user key as its user, or an agent (or admin) key acting for X-Registry-User.
  GATEWAY: "user",
  // The registry API (features/registry_api): reads, filtered to a user's services for a user key or X-Registry-User.
  REGISTRY_API: "user",
  // GET /metrics (features/metrics): an admin key, or a key of REGISTRY_METRICS_KEY, which opens nothing else.
  METRICS: "admin",
  "tool list_services": "agent",
  "tool get_tools": "agent",
  "tool get_service": "agent",
  "tool authorize_user_to_service": "agent",
  "tool revoke_user_token": "agent",
  "GET /list_services": "agent",
  "GET /token": "agent",
  "POST /token": "agent",
  "POST /role_for_user": "agent",
  "POST /tools_for_role": "agent",
  "POST /system_prompt_for_role": "agent",
};

/** True when `caller` may use the tool or route named `rule` (see RULES). */
export function mayCall(caller: Caller, rule: string): boolean {
  return RANK[caller.principal] >= RANK[RULES[rule] ?? "admin"];
}

/** How a set of keys recognises callers. */
export type KeyRing = {
  /** The caller for an Authorization header value, or null for a key that matches nothing. */
  resolve(authorization: string | undefined): Caller | null;
  /** "keys", "development" (no keys, loopback) or "off" (REGISTRY_AUTH=off). */
  mode: "keys" | "development" | "off";
  /** True while a key of this label is configured (a console session lives only as long as its key). */
  has(label: string): boolean;
  /** The reader for a key of REGISTRY_METRICS_KEY (it opens GET /metrics only), or null. */
  metricsReader(authorization: string | undefined): Caller | null;
};

const digest = (s: string) => createHash("sha256").update(s).digest();

/** Builds the key ring from the configuration; throws when the setting is unsafe. */
export function createKeyRing(config: Config): KeyRing {
  const keys = [
    ...config.adminKeys.map((k) => ({ principal: "admin" as const, hash: digest(k) })),
    ...config.agentKeys.map((k) => ({ principal: "agent" as const, hash: digest(k) })),
  ].map((k) => ({ ...k, caller: { principal: k.principal, label: `${k.principal}:${k.hash.toString("hex").slice(0, 8)}` } }));
  // A metrics key is no principal: it reads /metrics, as "anonymous" with its own label, and nothing else.
  const metricsKeys = config.metricsKeys.map(digest).map((hash) => ({ hash, caller: { principal: "anonymous" as const, label: `metrics:${hash.toString("hex").slice(0, 8)}` } }));
  // Compares against every key in constant time so timing tells nothing about which one matched.
  const match = (list: { hash: Buffer; caller: Caller }[], authorization: string): Caller | null => {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!m) return null;
    const presented = digest(m[1]);
    let found: Caller | null = null;
    for (const k of list) if (timingSafeEqual(presented, k.hash) && !found) found = k.caller;
    return found;
  };
  const noReader = () => null;
  if (config.auth === "off") return { mode: "off", resolve: () => ({ principal: "admin", label: "auth-off" }), has: (label) => label === "auth-off", metricsReader: noReader };
  if (keys.length === 0) {
    if (!isLoopback(config.host)) {
      throw new Error(
        `Refusing to listen on ${config.host} without keys: set REGISTRY_ADMIN_KEYS and REGISTRY_AGENT_KEYS, ` +
          `or bind to 127.0.0.1 (MCP_HOST), or set REGISTRY_AUTH=off to accept anyone as admin`,
      );
    }
    return { mode: "development", resolve: () => ({ principal: "admin", label: "development" }), has: (label) => label === "development", metricsReader: noReader };
  }
  const labels = new Set(keys.map((k) => k.caller.label));
  return {
    mode: "keys",
    has: (label) => labels.has(label),
    resolve: (authorization) => (authorization ? match(keys, authorization) : { principal: "anonymous", label: "anonymous" }),
    metricsReader: (authorization) => (authorization && metricsKeys.length > 0 ? match(metricsKeys, authorization) : null),
  };
}

/** True for the host names and addresses of the loopback interface. */
function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  return h === "localhost" || h === "::1" || /^127(\.\d{1,3}){3}$/.test(h);
}

/**
 * Middleware: context, the browser rules (Host and Origin), caller resolution and the access rule of the route.
 * Host: a registry bound to loopback answers only requests addressed to a loopback name (a page whose host
 * name was rebound to 127.0.0.1 sends its own). Origin: a browser request from another site is refused on
 * every route but the public reads (/health, /ready); curl and agents send no Origin.
 */
export function accessMiddleware(ctx: Ctx, keys: KeyRing): MiddlewareHandler<AppEnv> {
  const guardHost = isLoopback(ctx.config.host);
  // The public URL's origin is the registry's own, also behind a proxy that rewrites Host.
  const allowedOrigins = new Set([...ctx.config.allowedOrigins, ...(ctx.config.publicUrl ? [new URL(ctx.config.publicUrl).origin] : [])]);
  return async function access(c, next) {
    c.set("ctx", ctx);
    const path = c.req.path.replace(/\/+$/, "") || "/";
    const method = c.req.method === "HEAD" ? "GET" : c.req.method;
    const rule = ruleOf(method, path);
    const anonymous = mayCall({ principal: "anonymous", label: "anonymous" }, rule);
    const refusal = (guardHost ? foreignHost(c.req.header("host")) : null) ?? (anonymous && method === "GET" ? null : foreignOrigin(c, allowedOrigins, guardHost));
    if (refusal) {
      await recordAudit(ctx, {
        caller: { principal: "anonymous", label: "browser" },
        action: "refused_request",
        // A connect link's code is a credential: the target names the route, never the code.
        target: `${method} ${path.startsWith("/connect/") ? "/connect/<code>" : path}`.slice(0, 200),
        outcome: "forbidden",
        detail: refusal,
      });
      throw new AppError("forbidden", refusal);
    }
    const authorization = c.req.header("authorization");
    const caller = isUserKey(authorization) ? await resolveUserKey(ctx, authorization!) : keys.resolve(authorization);
    if (anonymous) {
      c.set("caller", caller ?? { principal: "anonymous", label: "anonymous" });
      return next();
    }
    // A key that is no caller's may be a metrics key: it opens GET /metrics, and is refused everywhere else.
    const reader = caller === null ? keys.metricsReader(authorization) : null;
    if (reader) {
      if (rule !== "METRICS") throw new AppError("forbidden", "A metrics key (REGISTRY_METRICS_KEY) opens only GET /metrics");
      c.set("caller", reader);
      return next();
    }
    if (!caller || caller.principal === "anonymous") {
      c.header("WWW-Authenticate", 'Bearer realm="mcp-registry"');
      throw new AppError("unauthorized", caller ? "Authentication required: send Authorization: Bearer <key>" : "Invalid API key");
    }
    if (caller.principal === "user" && RULES[rule] !== "user") throw new AppError("forbidden", USER_KEY_ONLY);
    // Any known key may open the MCP endpoint; each tool is then checked against its own rule.
    if (rule !== "MCP" && !mayCall(caller, rule)) throw new AppError("forbidden", `The ${caller.principal} key may not call ${rule}`);
    c.set("caller", RULES[rule] === "user" ? actingFor(caller, c.req.header("x-registry-user"), rule === "GATEWAY") : caller);
    return next();
  };
}

const USER_KEY_ONLY = "A user key opens only the gateway (POST /gateway/mcp) and the registry API (GET /v0.1/servers)";

/**
 * The rule (see RULES) a request falls under: the MCP endpoints, /metrics and the connect page by path
 * whatever the method (they answer a wrong method themselves), the registry API's reads by prefix, every
 * other route by method and path.
 */
export function ruleOf(method: string, path: string): string {
  if (path === "/mcp") return "MCP";
  if (path === "/gateway/mcp") return "GATEWAY";
  if (path === "/metrics") return "METRICS";
  if (path.startsWith("/connect/")) return "CONNECT";
  if (path === "/console" || path.startsWith("/console/")) return "CONSOLE";
  if (method === "GET" && (path === "/v0.1/servers" || path.startsWith("/v0.1/servers/"))) return "REGISTRY_API";
  return `${method} ${path}`;
}

/**
 * The caller of the gateway or the registry API with the user it acts for: a user key's own user
 * (X-Registry-User may only repeat it), or for an agent or admin key the user named in X-Registry-User,
 * which the gateway (`required`) must have; the registry API without it acts for nobody (every service).
 */
function actingFor(caller: Caller, header: string | undefined, required: boolean): Caller {
  if (caller.principal === "user") {
    if (header !== undefined && header.trim() !== caller.userId)
      throw new AppError("forbidden", `This user key acts only for user "${caller.userId}": leave out X-Registry-User or send that user`);
    return caller;
  }
  if ((header === undefined || header.trim() === "") && !required) return caller;
  if (header === undefined || header.trim() === "")
    throw new AppError("invalid_input", "The gateway acts for one user: with an agent key, name the user in the X-Registry-User header");
  return { ...caller, userId: validate(UserId, header, "act for the user of X-Registry-User") };
}

// DNS rebinding: the reason a loopback-bound registry refuses a request for another host name, or null.
function foreignHost(host: string | undefined): string | null {
  if (!host) return null;
  return isLoopback(host.replace(/:\d+$/, "")) ? null : `Host "${host.slice(0, 200)}" is not allowed: this registry answers only on loopback names (127.0.0.1, localhost, [::1])`;
}

/**
 * The reason a request from a browser page of another origin is refused, or null. Allowed: no Origin (not a
 * browser, or a same-origin GET), the registry's own origin (its Host; on loopback any loopback name with
 * its port), REGISTRY_ALLOWED_ORIGINS. Without Origin, a browser's Sec-Fetch-Site still tells a request
 * another site started (a navigation or an image).
 */
function foreignOrigin(c: Context<AppEnv>, allowed: Set<string>, loopback: boolean): string | null {
  const origin = c.req.header("origin");
  if (origin === undefined) {
    const site = c.req.header("sec-fetch-site");
    return site === "cross-site" || site === "same-site" ? "A request started by another site is not allowed" : null;
  }
  if (allowed.has(origin)) return null;
  const host = c.req.header("host") ?? "";
  let own = false;
  try {
    const url = new URL(origin);
    own = url.host === host || (loopback && isLoopback(url.hostname) && url.port === portOf(host));
  } catch {
    /* "null" or malformed: not the registry's own */
  }
  return own ? null : `Origin "${origin.slice(0, 200)}" is not allowed: only the registry's own pages and REGISTRY_ALLOWED_ORIGINS may call it from a browser`;
}

// The port of a Host header value ("" for the scheme's default, as URL.port has it).
function portOf(host: string): string {
  const m = /:(\d+)$/.exec(host);
  return m && m[1] !== "80" ? m[1] : "";
}

/** The MCP serving of `tools`: each caller lists exactly the tools its rules let it call, and calls go through callTool. */
export function mcpServing(tools: ToolDef[]): McpServing {
  const byName = new Map(tools.map((t) => [t.name, t]));
  const listed = listTools(tools);
  const visible = Object.fromEntries(
    (["anonymous", "user", "agent", "admin"] as const).map((p) => [p, listed.filter((t) => mayCall({ principal: p, label: p }, `tool ${t.name}`))]),
  ) as Record<Principal, typeof listed>;
  return {
    server: (ctx, caller, validator): Server => createMcpServer(visible[caller.principal], (name, args) => callTool(ctx, byName, caller, name, args), validator),
    refused: (ctx, caller, action, reason) => void recordAudit(ctx, { caller, action, target: "", outcome: "invalid_input", detail: reason }),
    call: (ctx, caller, name, args) => callTool(ctx, byName, caller, name, args),
    listed: (principal) => visible[principal],
  };
}

/** Runs one tool call for a caller: access rule, input validation, errors mapped to tool results; every change audited. */
async function callTool(ctx: Ctx, tools: Map<string, ToolDef>, caller: Caller, name: string, args: unknown): Promise<CallToolResult> {
  const tool = tools.get(name);
  const run = async (pending: Parameters<ToolDef["run"]>[2]) => {
    if (!tool || !mayCall(caller, `tool ${name}`))
      throw new AppError(tool ? "forbidden" : "not_found", `Cannot call tool "${name}": ${tool ? "not allowed for this key" : "no such tool"}`);
    const input = validate(tool.input, args ?? {}, name.replaceAll("_", " "));
    pending.entry.target = auditTarget(input);
    const out = await tool.run(ctx, input, pending);
    return { content: [{ type: "text" as const, text: out.text }], ...(out.data ? { structuredContent: out.data } : {}) };
  };
  try {
    // Every call of a tool that changes something is audited, allowed or not, succeeded or not.
    const entry = { caller, action: name, target: auditTarget(args) };
    const result = tool?.annotations.readOnlyHint ? await run({ entry: { ...entry, outcome: "ok" }, written: true }) : await audited(ctx, entry, run);
    countToolCall(tool?.name, "ok");
    return result;
  } catch (thrown) {
    const err = recognizeError(thrown);
    countToolCall(tool?.name, outcomeOf(err));
    // The id ties the caller's "Internal error (request …)" to the log line; only errors need one.
    const requestId = crypto.randomUUID().slice(0, 8);
    if (!(err instanceof AppError)) ctx.log.error("Internal error", { requestId, tool: name, error: describeForLog(err) });
    return toToolError(err, requestId);
  }
}
