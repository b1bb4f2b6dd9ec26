/**
 * The gateway's connections to downstream services: one initialized MCP session per (service, user,
 * credential), reused while it is used and closed after a minute idle. Two users never share a session,
 * and a session never carries anything but the user's own credential.
 */
import { createHash } from "node:crypto";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { type CallToolResult, CallToolResultSchema, McpError } from "@modelcontextprotocol/sdk/types.js";
import type { Ctx } from "../../shared/context.ts";
import { MAX_NESTING, nestedWithin } from "../../shared/validate.ts";
import { AppError } from "../../shared/errors.ts";
import { REGISTRY_VERSION } from "../../shared/mcp.ts";
import { counted, reasonOf, redact, withDeadline } from "../services/discovery.ts";
import { initializeSession, postRpc, SessionGone, sameOriginFetch } from "../../shared/post.ts";

const CLIENT_INFO = { name: "mcp-registry-gateway", version: REGISTRY_VERSION };
/** A session unused this long is closed. */
const IDLE_MS = 60_000;
/** Sessions one registry keeps open at most; past it the least recently used is closed. */
const MAX_SESSIONS = 1000;

/** Where a call goes and as whom: the service, the user, and the headers carrying the user's credential (if any). */
export type Downstream = {
  serviceId: number;
  service: string;
  endpoint: string;
  transport: "streamable_http" | "sse";
  userId: string;
  headers: Record<string, string> | undefined;
};

/**
 * An open session: over streamable HTTP, the headers its POSTs carry (shared/post.ts: the user's credential,
 * the session id, the protocol version); over the legacy SSE transport, the SDK client holding its stream.
 * `failure`: why the registry ended it (an answer past the limit); `closed`: the SSE connection is gone.
 */
type Session = {
  client?: Client;
  http?: { headers: Record<string, string> };
  nextId: number;
  timer?: ReturnType<typeof setTimeout>;
  failure?: AppError;
  closed?: boolean;
};
type Pool = { sessions: Map<string, Promise<Session>>; closed: boolean };
const pools = new WeakMap<Ctx, Pool>();

function poolOf(ctx: Ctx): Pool {
  let pool = pools.get(ctx);
  if (!pool) {
    pool = { sessions: new Map(), closed: false };
    pools.set(ctx, pool);
  }
  return pool;
}

// One key per service, endpoint, transport, user and credential: a changed credential opens a new session.
function keyOf(d: Downstream): string {
  return createHash("sha256")
    .update(JSON.stringify([d.serviceId, d.endpoint, d.transport, d.userId, d.headers ?? null]))
    .digest("hex");
}

/**
 * Calls `name` with `args` (passed on untouched) on the downstream service as the user and returns its
 * result as it came. A failure is an AppError naming the service: an error answer, no answer within the
 * gateway's timeout, an unreachable service. A session the service forgot (HTTP 404) is opened anew once.
 */
export async function callDownstream(ctx: Ctx, d: Downstream, name: string, args: Record<string, unknown> | undefined): Promise<CallToolResult> {
  const timeoutMs = ctx.config.gatewayTimeoutMs;
  for (let attempt = 0; ; attempt++) {
    const key = keyOf(d);
    let session: Session | undefined;
    const deadline = AbortSignal.timeout(timeoutMs);
    try {
      session = await withDeadline(sessionFor(ctx, key, d, deadline), deadline);
      const result = await callOn(ctx, session, d, { name, arguments: args }, deadline);
      idle(ctx, key, session);
      // Relayed as it came, but never deeper than any input the registry accepts: the answer is serialized again.
      if (!nestedWithin(result))
        throw new AppError("unavailable", `Service "${d.service}" answered the call of "${name}" with a result nested more than ${MAX_NESTING} levels deep`, 502);
      return result as CallToolResult;
    } catch (err) {
      if (err instanceof AppError) throw err;
      // The service answered with an error (whatever its code), or this call took too long: the session
      // stays for other calls. Only a closed connection or the registry ending it tells otherwise.
      const answered = err instanceof McpError && !deadline.aborted && !session?.closed && !session?.failure;
      if (answered) throw new AppError("unavailable", `Service "${d.service}" refused the call of "${name}": ${redact(err.message, d.headers).slice(0, 500)}`, 502);
      if (session && deadline.aborted && !session.closed) idle(ctx, key, session);
      else await drop(ctx, key);
      if (attempt === 0 && err instanceof SessionGone) continue;
      throw session?.failure ?? failureOf(d, err, deadline, timeoutMs);
    }
  }
}

/**
 * tools/call on an open session: over streamable HTTP as one POST (shared/post.ts) with the session's
 * headers; over the legacy SSE transport through the SDK client. A service's error answer is an McpError,
 * whatever its code.
 */
async function callOn(ctx: Ctx, session: Session, d: Downstream, params: { name: string; arguments?: Record<string, unknown> }, deadline: AbortSignal): Promise<unknown> {
  if (!session.http) {
    // The deadline ends the call; the SDK's own timeout (a second later) never fires first, so an error with
    // the SDK's timeout code can only be the service's own answer.
    return session.client!.request({ method: "tools/call", params }, CallToolResultSchema, { signal: deadline, timeout: ctx.config.gatewayTimeoutMs + 1000 });
  }
  const limit = ctx.config.limits.answerBytes;
  const answer = await postRpc({
    url: new URL(d.endpoint),
    headers: session.http.headers,
    message: { jsonrpc: "2.0", id: session.nextId++, method: "tools/call", params },
    limit,
    tooLarge: () => new AppError("unavailable", `Service "${d.service}" answered with more than ${limit} bytes (REGISTRY_MAX_DISCOVERY_BYTES)`, 502),
    signal: deadline,
  });
  if (answer.error) throw new McpError(answer.error.code, answer.error.message, answer.error.data);
  const result = answer.result as { content?: unknown } | undefined;
  if (!result || typeof result !== "object") throw new AppError("unavailable", `Service "${d.service}" answered the call of "${params.name}" without a result`, 502);
  return result;
}

function failureOf(d: Downstream, err: unknown, deadline: AbortSignal, timeoutMs: number): AppError {
  if (err instanceof AppError) return err;
  const timedOut = deadline.aborted;
  const reason = timedOut ? `no answer within ${timeoutMs / 1000} s (REGISTRY_GATEWAY_TIMEOUT)` : reasonOf(err, deadline, timeoutMs, d.headers);
  return new AppError("unavailable", `Service "${d.service}" could not be reached: ${redact(reason, d.headers)}`, timedOut ? 504 : 502);
}

// The open session for a key, or a new one; concurrent first calls share one initialization.
function sessionFor(ctx: Ctx, key: string, d: Downstream, deadline: AbortSignal): Promise<Session> {
  const pool = poolOf(ctx);
  if (pool.closed) throw new AppError("unavailable", "The registry is stopping", 503);
  const open = pool.sessions.get(key);
  if (open) {
    // Most recently used last: the first entry is the one to close when the pool is full.
    pool.sessions.delete(key);
    pool.sessions.set(key, open);
    return open;
  }
  if (pool.sessions.size >= MAX_SESSIONS) void drop(ctx, pool.sessions.keys().next().value!);
  const opening = connect(ctx, d, deadline);
  pool.sessions.set(key, opening);
  // A failed initialization is not kept: the next call tries again.
  opening.catch(() => {
    if (pool.sessions.get(key) === opening) pool.sessions.delete(key);
  });
  return opening;
}

async function connect(ctx: Ctx, d: Downstream, deadline: AbortSignal): Promise<Session> {
  const limit = ctx.config.limits.answerBytes;
  const session: Session = { nextId: 1 };
  const tooLarge = () => {
    session.failure ??= new AppError("unavailable", `Service "${d.service}" answered with more than ${limit} bytes (REGISTRY_MAX_DISCOVERY_BYTES)`, 502);
    void session.client?.close().catch(() => {});
    return session.failure;
  };
  const url = new URL(d.endpoint);
  if (d.transport === "streamable_http") {
    // Initialization changes nothing downstream: sent again if a kept-alive connection turns out closed.
    const target = { url, headers: d.headers ?? {}, limit, tooLarge, signal: deadline, repeatable: true };
    const { headers } = await initializeSession(target, CLIENT_INFO).catch((err) => {
      throw session.failure ?? err;
    });
    session.http = { headers };
    return session;
  }
  // The legacy SSE transport: every request carries only the user's credential, and each event of the
  // stream is bounded. Past the limit the session ends and its calls fail saying why.
  const fetchWith = async (input: string | URL, init?: RequestInit) => {
    const method = init?.method ?? "GET";
    const headers = new Headers(init?.headers);
    for (const [k, v] of Object.entries(d.headers ?? {})) headers.set(k, v);
    const response = await sameOriginFetch(input, { ...init, headers });
    return method === "POST" ? counted(response, limit, tooLarge) : eventsWithin(response, limit, tooLarge);
  };
  const client = new Client(CLIENT_INFO);
  session.client = client;
  client.onclose = () => {
    session.closed = true;
  };
  try {
    await client.connect(new SSEClientTransport(url, { fetch: fetchWith }), { signal: deadline, timeout: ctx.config.gatewayTimeoutMs + 1000 });
  } catch (err) {
    await client.close().catch(() => {});
    throw session.failure ?? err;
  }
  return session;
}

// The session is idle from now: closed after IDLE_MS unless used again.
function idle(ctx: Ctx, key: string, session: Session): void {
  clearTimeout(session.timer);
  session.timer = setTimeout(() => void drop(ctx, key), IDLE_MS);
  session.timer.unref?.();
}

async function drop(ctx: Ctx, key: string): Promise<void> {
  const pool = poolOf(ctx);
  const opening = pool.sessions.get(key);
  if (!opening) return;
  pool.sessions.delete(key);
  const session = await opening.catch(() => null);
  if (!session) return;
  clearTimeout(session.timer);
  await session.client?.close().catch(() => {});
}

/** Closes every downstream session (the registry is stopping); later calls are refused. */
export async function closeSessions(ctx: Ctx): Promise<void> {
  const pool = poolOf(ctx);
  pool.closed = true;
  await Promise.all([...pool.sessions.keys()].map((key) => drop(ctx, key)));
}

/**
 * The response with each server-sent event bounded to `limit` bytes (the legacy SSE transport's stream
 * carries every answer, so the stream as a whole is not): an event past it errors the body with `tooLarge()`.
 */
function eventsWithin(response: Response, limit: number, tooLarge: () => Error): Response {
  if (!response.body) return response;
  let inEvent = 0;
  let newline = false;
  const body = response.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        for (const byte of chunk) {
          // An empty line (two line feeds, carriage returns aside) ends an event.
          if (byte === 10) {
            if (newline) inEvent = 0;
            newline = true;
          } else if (byte !== 13) newline = false;
          if (++inEvent > limit) return controller.error(tooLarge());
        }
        controller.enqueue(chunk);
      },
    }),
  );
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}
