/**
 * MCP over streamable HTTP as plain POSTs on kept-alive connections (node:http, on Node and on Deno): a
 * session's initialization and its JSON-RPC requests. The gateway's sessions and discovery's go this way;
 * through the SDK client and fetch a gateway call cost the registry about 2.5 times the CPU and a 10-tool
 * discovery about 3.5 times (docs/performance.md). The legacy SSE transport stays with the SDK client, over
 * sameOriginFetch (below), which holds its redirects within the endpoint's origin as these POSTs do.
 */
import http from "node:http";
import https from "node:https";
import { type AnySchema, type SchemaOutput, safeParse } from "@modelcontextprotocol/sdk/server/zod-compat.js";
import { type InitializeResult, InitializeResultSchema, LATEST_PROTOCOL_VERSION, McpError, SUPPORTED_PROTOCOL_VERSIONS } from "@modelcontextprotocol/sdk/types.js";

/**
 * Connections kept open between requests, per registry process and origin. One left idle is closed after
 * IDLE_SOCKET_MS even when the service would keep it forever (Go's net/http does by default): the refresher
 * talks to every service once per interval, and thousands of idle sockets would use up the file descriptors.
 * 4 s is under the 5 s after which uvicorn (Python MCP servers) and Node close an idle connection, uvicorn
 * without saying so: at 5 s a tool call sent just as the service closed its connection failed ("connection
 * reset"), and a call is never sent twice. A shorter `Keep-Alive: timeout=N` from the service is honoured
 * (N - 1 s) by node:http itself. undici, fetch's engine, keeps 4 s too.
 */
const IDLE_SOCKET_MS = 4_000;
const agents = {
  "http:": new http.Agent({ keepAlive: true, maxSockets: 256, timeout: IDLE_SOCKET_MS }),
  "https:": new https.Agent({ keepAlive: true, maxSockets: 256, timeout: IDLE_SOCKET_MS }),
};

/** The service no longer knows the session (HTTP 404 to a request that named one): initialize again. */
export class SessionGone extends Error {}

/** A JSON-RPC answer: its result, or its error; `sessionId`: the Mcp-Session-Id header it came with, if any. */
export type RpcAnswer = { result?: unknown; error?: { code: number; message: string; data?: unknown }; sessionId?: string };

export type RpcRequest = {
  url: URL;
  headers: Record<string, string>;
  /** The request, its id among them; without an id, a notification (answered by 202 and no body). */
  message: { jsonrpc: "2.0"; id?: number; method: string; params?: unknown };
  /** Bytes the answer may have at most; past them the request ends with tooLarge(). */
  limit: number;
  tooLarge(): Error;
  signal: AbortSignal;
  /**
   * The request may be sent again (it changes nothing downstream): when a kept-alive connection turns out to
   * have been closed by the service just as it was reused, it is sent on another one.
   */
  repeatable?: boolean;
};

/**
 * Sends the request and resolves with the answer to its id (from a JSON body or from the events of an SSE
 * one); a notification resolves with no answer once the service accepted it. Follows at most 5 redirects
 * (307/308), each within the endpoint's origin: the credential in the headers never goes to another host.
 */
export async function postRpc(r: RpcRequest): Promise<RpcAnswer> {
  const body = JSON.stringify(r.message);
  let url = r.url;
  for (let hops = 0; ; hops++) {
    const res = await send(url, r, body);
    const status = res.statusCode ?? 0;
    const location = res.headers.location;
    if (status >= 300 && status < 400 && location) {
      discard(res);
      const next = new URL(location, url);
      if (next.origin !== url.origin) throw new Error("the service redirected to another origin");
      if (status !== 307 && status !== 308) throw new Error(`the service redirected with HTTP ${status}, which turns a POST into a GET (only 307 and 308 are followed)`);
      if (hops === 5) throw new Error("the service redirected to itself too often");
      url = next;
      continue;
    }
    if (status === 404 && r.headers["mcp-session-id"]) {
      discard(res);
      throw new SessionGone("session gone");
    }
    if (status < 200 || status >= 400) {
      discard(res);
      throw Object.assign(new Error(`HTTP ${status}`), { code: status });
    }
    if (r.message.id === undefined) {
      discard(res);
      return {};
    }
    // A declared length past the limit is refused unread.
    if (Number(res.headers["content-length"] ?? 0) > r.limit) {
      res.destroy();
      throw r.tooLarge();
    }
    const sessionId = res.headers["mcp-session-id"];
    const answer = await answerIn(res, r, r.message.id);
    return typeof sessionId === "string" ? { ...answer, sessionId } : answer;
  }
}

function send(url: URL, r: RpcRequest, body: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const agent = agents[url.protocol as keyof typeof agents];
    if (!agent) return reject(new Error(`the endpoint is not an http(s) URL`));
    const headers = { ...r.headers, "content-type": "application/json", accept: "application/json, text/event-stream", "content-length": String(Buffer.byteLength(body)) };
    let answered = false;
    const req = (url.protocol === "https:" ? https : http).request(url, { method: "POST", headers, agent, signal: r.signal }, (res) => {
      answered = true;
      resolve(res);
    });
    // A 101 hands the connection to another protocol: no MCP answer comes on it (without this it waited for the deadline).
    req.once("upgrade", (_res, socket) => {
      socket.destroy();
      reject(new Error("the service answered HTTP 101 (Switching Protocols), not an MCP answer"));
    });
    req.once("error", (err: NodeJS.ErrnoException) => {
      // A reused connection the service had closed in the meantime (it stopped, or its idle timeout ran out),
      // before any answer began. Sent again on the next one: each stale connection is gone once tried, so
      // this ends on a new connection. An answer cut off midway is an error: the request is not sent twice.
      const stale = !answered && req.reusedSocket && (err.code === "ECONNRESET" || err.code === "EPIPE");
      if (stale && r.repeatable && !r.signal.aborted) send(url, r, body).then(resolve, reject);
      else reject(err);
    });
    req.end(body);
  });
}

/** What an answer the registry does not read may bring before its connection is closed instead of reused. */
const DISCARD_BYTES = 65_536;
const DISCARD_MS = 1_000;

/**
 * An answer not read (an empty 202 sent chunked, as the SDK's server does, an error page): drained, so that
 * its connection goes back to the pool, but only up to DISCARD_BYTES and DISCARD_MS; past either it is
 * closed. Its size and pace are the service's to choose.
 */
function discard(res: http.IncomingMessage): void {
  let bytes = 0;
  const timer = setTimeout(() => res.destroy(), DISCARD_MS);
  timer.unref?.();
  res.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > DISCARD_BYTES) res.destroy();
  });
  res.once("close", () => clearTimeout(timer));
  res.resume();
}

// The answer to the request's id in a response body, read within the limit: a JSON message (or batch), or SSE events.
function answerIn(res: http.IncomingMessage, r: RpcRequest, id: number): Promise<RpcAnswer> {
  const sse = String(res.headers["content-type"] ?? "").startsWith("text/event-stream");
  return new Promise((resolve, reject) => {
    let text = "";
    let bytes = 0;
    // SSE lines end with CRLF, LF or CR: read as LF, a CRLF split between two chunks included.
    let afterCr = false;
    const fail = (err: Error) => {
      res.destroy();
      reject(err);
    };
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      bytes += Buffer.byteLength(chunk);
      if (bytes > r.limit) return fail(r.tooLarge());
      if (!sse) {
        text += chunk;
        return;
      }
      const lf = (afterCr && chunk.startsWith("\n") ? chunk.slice(1) : chunk).replace(/\r\n?/g, "\n");
      afterCr = chunk.endsWith("\r");
      text += lf;
      // Complete events so far: the answer may come before the stream ends (or after notifications). Only
      // the new text is searched for an event's end, so a long event costs its length once, not per chunk.
      if (!text.slice(Math.max(0, text.length - lf.length - 1)).includes("\n\n")) return;
      const events = text.split("\n\n");
      text = events.pop()!;
      for (const event of events) {
        const found = answerOf(dataOf(event), id);
        if (found) {
          res.destroy();
          return resolve(found);
        }
      }
    });
    res.once("error", reject);
    res.once("end", () => {
      const found = answerOf(sse ? dataOf(text) : text, id);
      if (found) resolve(found);
      else reject(new Error("the service's answer held no response to the call"));
    });
  });
}

// The data of one server-sent event (its data lines joined).
function dataOf(event: string): string {
  return event
    .split(/\r\n?|\n/)
    .filter((line) => line.startsWith("data:"))
    .map((line) => line.slice(line[5] === " " ? 6 : 5))
    .join("\n");
}

// The response with `id` in a JSON text (one message or a batch), or null.
function answerOf(json: string, id: number): RpcAnswer | null {
  if (!json.trim()) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    return null;
  }
  for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
    if (m && typeof m === "object" && (m as { id?: unknown }).id === id && ("result" in m || "error" in m)) return m as RpcAnswer;
  }
  return null;
}

/** Where a session's requests go and how they are bounded: RpcRequest without its message. */
export type SessionTarget = Omit<RpcRequest, "message">;

/**
 * Initializes a session as the SDK client does: offers the latest protocol version, accepts one the SDK
 * supports, then sends notifications/initialized. Resolves with what the service said of itself and the
 * headers every later request of the session carries (the caller's, the session id if the service gave one,
 * the protocol version). The optional GET stream for messages the service would start is never opened.
 */
export async function initializeSession(
  target: SessionTarget,
  clientInfo: { name: string; version: string },
): Promise<{ init: InitializeResult; headers: Record<string, string> }> {
  const params = { protocolVersion: LATEST_PROTOCOL_VERSION, capabilities: {}, clientInfo };
  const answer = await postRpc({ ...target, message: { jsonrpc: "2.0", id: 0, method: "initialize", params } });
  const init = resultOf(answer, InitializeResultSchema);
  if (!SUPPORTED_PROTOCOL_VERSIONS.includes(init.protocolVersion)) throw new Error(`the service's protocol version is not supported: ${init.protocolVersion}`);
  const headers = { ...target.headers, ...(answer.sessionId ? { "mcp-session-id": answer.sessionId } : {}), "mcp-protocol-version": init.protocolVersion };
  await postRpc({ ...target, headers, message: { jsonrpc: "2.0", method: "notifications/initialized" } });
  return { init, headers };
}

/** The answer's result as `schema` reads it; an error answer is an McpError, a result MCP does not allow an Error. */
export function resultOf<S extends AnySchema>(answer: RpcAnswer, schema: S): SchemaOutput<S> {
  if (answer.error) throw new McpError(answer.error.code, answer.error.message, answer.error.data);
  const parsed = safeParse(schema, answer.result);
  if (!parsed.success) throw new Error(`the service's answer is not one MCP allows: ${String((parsed.error as Error).message).slice(0, 200)}`);
  return parsed.data;
}

/**
 * fetch following at most 5 redirects, each within the endpoint's origin, for the legacy SSE transport
 * (discovery's and the gateway's): a credential header is never sent to another host (a redirect elsewhere
 * is an error; fetch itself would drop only Authorization), while a service that redirects /mcp to /mcp/ works.
 */
export async function sameOriginFetch(input: string | URL, init: RequestInit): Promise<Response> {
  let url = new URL(input);
  for (let hops = 0; ; hops++) {
    const response = await fetch(url, { ...init, redirect: "manual" });
    const location = response.headers.get("location");
    if (response.status < 300 || response.status >= 400 || !location) return response;
    await response.body?.cancel().catch(() => {});
    const next = new URL(location, url);
    if (next.origin !== url.origin || hops === 5) throw new Error(`the service redirected to ${next.origin === url.origin ? "itself too often" : "another origin"}`);
    url = next;
  }
}
