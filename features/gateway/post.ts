/**
 * One JSON-RPC request to a streamable HTTP MCP service as a plain POST on a kept-alive connection
 * (node:http, on Node and on Deno). The gateway's calls go this way once the SDK client has initialized the
 * session: through the SDK client and fetch a call cost the registry about 2.5 times the CPU (docs/performance.md).
 */
import http from "node:http";
import https from "node:https";

// Connections kept open between calls, per registry process (the services are few; sockets are reused per origin).
const agents = { "http:": new http.Agent({ keepAlive: true, maxSockets: 256 }), "https:": new https.Agent({ keepAlive: true, maxSockets: 256 }) };

/** The service no longer knows the session (HTTP 404 to a request that named one): initialize again. */
export class SessionGone extends Error {}

/** A JSON-RPC answer: its result, or its error. */
export type RpcAnswer = { result?: unknown; error?: { code: number; message: string; data?: unknown } };

export type RpcRequest = {
  url: URL;
  headers: Record<string, string>;
  /** The request, its id among them. */
  message: { jsonrpc: "2.0"; id: number; method: string; params?: unknown };
  /** Bytes the answer may have at most; past them the request ends with tooLarge(). */
  limit: number;
  tooLarge(): Error;
  signal: AbortSignal;
};

/**
 * Sends the request and resolves with the answer to its id (from a JSON body or from the events of an SSE
 * one). Follows at most 5 redirects (307/308), each within the endpoint's origin: the credential in the
 * headers never goes to another host.
 */
export async function postRpc(r: RpcRequest): Promise<RpcAnswer> {
  const body = JSON.stringify(r.message);
  let url = r.url;
  for (let hops = 0; ; hops++) {
    const res = await send(url, r, body);
    const location = res.headers.location;
    if (res.statusCode && res.statusCode >= 300 && res.statusCode < 400 && location) {
      res.resume();
      const next = new URL(location, url);
      if (next.origin !== url.origin || hops === 5 || (res.statusCode !== 307 && res.statusCode !== 308))
        throw new Error(`the service redirected to ${next.origin !== url.origin ? "another origin" : "itself too often"}`);
      url = next;
      continue;
    }
    if (res.statusCode === 404 && r.headers["mcp-session-id"]) {
      res.resume();
      throw new SessionGone("session gone");
    }
    if (!res.statusCode || res.statusCode >= 400) {
      res.resume();
      throw Object.assign(new Error(`HTTP ${res.statusCode}`), { code: res.statusCode });
    }
    return answerIn(res, r);
  }
}

function send(url: URL, r: RpcRequest, body: string): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    const agent = agents[url.protocol as keyof typeof agents];
    if (!agent) return reject(new Error(`the endpoint is not an http(s) URL`));
    const headers = { ...r.headers, "content-type": "application/json", accept: "application/json, text/event-stream", "content-length": String(Buffer.byteLength(body)) };
    const req = (url.protocol === "https:" ? https : http).request(url, { method: "POST", headers, agent, signal: r.signal }, resolve);
    req.once("error", reject);
    req.end(body);
  });
}

// The answer to the request's id in a response body, read within the limit: a JSON message (or batch), or SSE events.
function answerIn(res: http.IncomingMessage, r: RpcRequest): Promise<RpcAnswer> {
  const sse = String(res.headers["content-type"] ?? "").startsWith("text/event-stream");
  return new Promise((resolve, reject) => {
    let text = "";
    let bytes = 0;
    const fail = (err: Error) => {
      res.destroy();
      reject(err);
    };
    res.setEncoding("utf8");
    res.on("data", (chunk: string) => {
      bytes += Buffer.byteLength(chunk);
      if (bytes > r.limit) return fail(r.tooLarge());
      text += chunk;
      if (!sse) return;
      // Complete events so far: the answer may come before the stream ends (or after notifications).
      const events = text.split(/\r?\n\r?\n/);
      text = events.pop()!;
      for (const event of events) {
        const found = answerOf(dataOf(event), r.message.id);
        if (found) {
          res.destroy();
          return resolve(found);
        }
      }
    });
    res.once("error", reject);
    res.once("end", () => {
      const found = answerOf(sse ? dataOf(text) : text, r.message.id);
      if (found) resolve(found);
      else reject(new Error("the service's answer held no response to the call"));
    });
  });
}

// The data of one server-sent event (its data lines joined).
function dataOf(event: string): string {
  return event
    .split(/\r?\n/)
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
