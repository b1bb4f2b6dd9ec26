/**
 * The gateway: one MCP endpoint per user. tools/list shows the tools attached to the user's role, across
 * services (catalogue.ts); tools/call checks the attachment again, sends the call to the service with the
 * user's own stored credential (downstream.ts) and relays the answer. A missing credential is answered
 * with a link to the connect page (connect.ts). Every call is an audit event.
 */
import { randomUUID } from "node:crypto";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { CallToolRequestSchema, type CallToolResult, ListToolsRequestSchema, UrlElicitationRequiredError } from "@modelcontextprotocol/sdk/types.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { type Context, Hono } from "hono";
import type { Caller, Ctx } from "../../shared/context.ts";
import { AppError, describeForLog, recognizeError, toToolError } from "../../shared/errors.ts";
import type { Feature } from "../../shared/feature.ts";
import type { AppEnv } from "../../shared/http.ts";
import { answerMcp, notPost, readMcpBody, REGISTRY_VERSION } from "../../shared/mcp.ts";
import { auditTarget, recordAudit } from "../audit/audit.ts";
import { openUserToken } from "../credentials/credentials.ts";
import { countGatewayCall } from "../metrics/metrics.ts";
import { discoveryHeaders } from "../services/refresh.ts";
import { type Listed, listingOf, page, roleOf, targetOf } from "./catalogue.ts";
import { connectRoutes, createConnectLink } from "./connect.ts";
import { callDownstream, closeSessions } from "./downstream.ts";

const SERVER_INFO = { name: "mcp-registry-gateway", version: REGISTRY_VERSION };
const INSTRUCTIONS = "The tools your role allows, from every service of the registry, named <service>__<tool>; each call goes to its service with your own credential.";
// The gateway keeps no session; the session id it hands out only says the client declared URL-mode elicitation.
const URL_ELICITATION_SESSION = "url-elicitation.";

/**
 * The gateway's MCP server for one caller acting for its user (caller.userId). `urlElicitation`: whether
 * the client declared URL-mode elicitation (then a missing credential is the spec's -32042 error with the link).
 */
export function gatewayServer(ctx: Ctx, caller: Caller, validator: AjvJsonSchemaValidator, urlElicitation: () => boolean): Server {
  const server = new Server(SERVER_INFO, { capabilities: { tools: {} }, instructions: INSTRUCTIONS, jsonSchemaValidator: validator });
  const userId = caller.userId!;
  server.setRequestHandler(ListToolsRequestSchema, async (req) => {
    const roleId = await roleOf(ctx, userId);
    if (roleId === null) return { tools: [] };
    return page(await listingOf(ctx, roleId), req.params?.cursor);
  });
  server.setRequestHandler(CallToolRequestSchema, (req) =>
    gatewayCall(ctx, caller, req.params.name, req.params.arguments, () => urlElicitation() || Boolean(server.getClientCapabilities()?.elicitation?.url)),
  );
  return server;
}

/** One gateway call: found in the user's listing, attachment and credential read anew, sent, relayed, audited. */
async function gatewayCall(ctx: Ctx, caller: Caller, name: string, args: Record<string, unknown> | undefined, urlElicitation: () => boolean): Promise<CallToolResult> {
  const started = performance.now();
  const userId = caller.userId!;
  let target = callTarget(userId, undefined, name);
  let service: string | undefined;
  // Recorded without waiting for the write: the service was called before the event could be written
  // anyway, so waiting would only delay the answer by a commit (an fsync on SQLite), not make the trail more
  // complete. The event is queued at once and written with the next group commit (features/audit).
  const finish = (outcome: string, detail = "") => {
    const ms = performance.now() - started;
    countGatewayCall(service, outcome, ms / 1000);
    void recordAudit(ctx, { caller, action: "gateway_call", target, outcome, detail: `duration_ms=${Math.round(ms)}${detail}` });
  };
  try {
    const roleId = await roleOf(ctx, userId);
    const listed = roleId === null ? undefined : (await listingOf(ctx, roleId)).byName.get(name);
    if (!listed || roleId === null)
      throw new AppError("not_found", `No tool "${name.slice(0, 200)}" for user "${userId}": the gateway offers only the tools attached to the user's role (tools/list)`);
    target = callTarget(userId, listed.service, listed.tool);
    service = listed.service;
    const result = await callListed(ctx, listed, userId, roleId, args, urlElicitation);
    finish(result.isError ? "tool_error" : "ok");
    return result;
  } catch (thrown) {
    const err = recognizeError(thrown);
    if (err instanceof UrlElicitationRequiredError) {
      finish("token_missing", " elicitation=url");
      throw err;
    }
    if (!(err instanceof AppError)) {
      const requestId = randomUUID().slice(0, 8);
      ctx.log.error("Internal error", { requestId, gateway_tool: name.slice(0, 200), error: describeForLog(err) });
      finish("internal", ` request=${requestId}`);
      return toToolError(err, requestId);
    }
    finish(err.status === 504 ? "timeout" : err.code);
    return { isError: true, content: [{ type: "text", text: err.message }] };
  }
}

async function callListed(
  ctx: Ctx,
  listed: Listed,
  userId: string,
  roleId: number,
  args: Record<string, unknown> | undefined,
  urlElicitation: () => boolean,
): Promise<CallToolResult> {
  const target = await targetOf(ctx, listed, userId, roleId);
  if (!target) throw new AppError("not_found", `Service "${listed.service}" was removed; list the tools again`);
  if (!target.attached) throw new AppError("forbidden", `Tool "${listed.tool}" of service "${listed.service}" is no longer allowed for your role; list the tools again`);
  let token: string | null = null;
  if (target.requiresAuthorization) {
    token = target.ciphertext && (await openUserToken(ctx, listed.serviceId, userId, target.ciphertext));
    if (!token) throw await missingCredential(ctx, listed, userId, target.userRowId!, urlElicitation());
  }
  const headers = discoveryHeaders(target.method, token);
  return callDownstream(ctx, { serviceId: listed.serviceId, service: listed.service, endpoint: target.endpoint, transport: target.transport, userId, headers }, listed.tool, args);
}

// What a call without the user's credential fails with: a tool error with the connect link, or, for a client
// that declared URL-mode elicitation, the spec's URLElicitationRequired error carrying the same link.
async function missingCredential(ctx: Ctx, listed: Listed, userId: string, userRowId: number, urlElicitation: boolean): Promise<Error> {
  const url = await createConnectLink(ctx, userRowId, listed.serviceId);
  const message = `Service "${listed.service}" needs your credential and none is stored for user "${userId}". Open ${url} (one use, valid 10 minutes), paste your token, then call the tool again.`;
  if (urlElicitation) return new UrlElicitationRequiredError([{ mode: "url", message, elicitationId: randomUUID(), url }], message);
  return new AppError("token_missing", message);
}

/** What a gateway message refused before any tool ran (too deep, bad params) leaves: an audit event (HTTP and stdio alike). */
export function gatewayRefused(ctx: Ctx, caller: Caller): (action: string, reason: string) => void {
  return (action, reason) =>
    void recordAudit(ctx, { caller, action: "gateway_call", target: callTarget(caller.userId!, undefined, action), outcome: "invalid_input", detail: reason });
}

/**
 * The audit target of a gateway call. The tool name is the caller's, unchecked until it is found: one outside
 * the tool-name characters is percent-encoded, so "x user_id=bob" cannot pass for another user's event.
 */
function callTarget(userId: string, service: string | undefined, tool: string): string {
  const shown = /^[A-Za-z0-9_.-]*$/.test(tool) ? tool : encodeURIComponent(tool);
  return auditTarget({ user_id: userId, service_name: service, tool: shown });
}

// POST /gateway/mcp: stateless streamable HTTP like /mcp, for the user the access rules settled (caller.userId).
function gatewayRoute(): (c: Context<AppEnv>) => Promise<Response> {
  const validator = new AjvJsonSchemaValidator();
  return async (c) => {
    if (c.req.method !== "POST") return notPost(c);
    const ctx = c.get("ctx");
    const caller = c.get("caller");
    const body = await readMcpBody(c);
    const declared = c.req.header("mcp-session-id")?.startsWith(URL_ELICITATION_SESSION) ?? false;
    const server = gatewayServer(ctx, caller, validator, () => declared);
    const response = await answerMcp(c, server, gatewayRefused(ctx, caller), body);
    if (declaresUrlElicitation(body) && response.ok) response.headers.set("Mcp-Session-Id", `${URL_ELICITATION_SESSION}${randomUUID()}`);
    return response;
  };
}

// An initialize request whose client declares URL-mode elicitation (capabilities.elicitation.url, MCP 2025-11-25).
function declaresUrlElicitation(body: unknown): boolean {
  const m = body as { method?: unknown; params?: { capabilities?: { elicitation?: { url?: unknown } } } } | undefined;
  return m?.method === "initialize" && m.params?.capabilities?.elicitation?.url !== undefined;
}

const routes = new Hono<AppEnv>().all("/gateway/mcp", gatewayRoute()).route("/", connectRoutes);

/** The gateway: its endpoint, the connect page, and the downstream sessions closed on shutdown. */
export const gateway: Feature = { name: "gateway", routes, start: (ctx) => ({ stop: () => closeSessions(ctx) }) };
