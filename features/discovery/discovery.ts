/** Discovery: connect to an MCP service over HTTP, read its whole tool catalogue and its description. */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport, SseError } from "@modelcontextprotocol/sdk/client/sse.js";
import { StreamableHTTPClientTransport, StreamableHTTPError } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Tool } from "@modelcontextprotocol/sdk/types.js";
import { AppError } from "../../shared/errors.ts";

export type Transport = "streamable_http" | "sse";

/** One tool as the registry keeps it. */
export type DiscoveredTool = {
  name: string;
  title: string | null;
  description: string;
  inputSchema: Tool["inputSchema"];
  outputSchema: Tool["outputSchema"] | null;
  annotations: Tool["annotations"] | null;
};

export type Discovery = { transport: Transport; tools: DiscoveredTool[]; description: string };

export type DiscoverOptions = {
  timeoutMs: number;
  /** Read a description from the service (resource, then instructions) instead of using the caller's. */
  wantDescription: boolean;
  /** Extra headers, e.g. the Authorization a service needs before it lists its tools (never shown in an error). */
  headers?: Record<string, string>;
  /** Cancels the discovery early (the registry is stopping). */
  signal?: AbortSignal;
};

/** Used when a service offers neither a service_description resource nor instructions. */
export const FALLBACK_DESCRIPTION = "No description was provided for this service.";
const MAX_PAGES = 1000;

/**
 * Connects to `endpoint` (streamable HTTP, falling back to SSE; SSE directly for a path ending in /sse),
 * reads every page of tools/list and, if asked, the description. Throws AppError("unavailable") with the
 * reason (header values blanked out); never takes longer than the timeout and always closes what it opened.
 */
export async function discoverService(endpoint: string, options: DiscoverOptions): Promise<Discovery> {
  try {
    return await discoverOnce(endpoint, options);
  } catch (err) {
    // A server can echo what it was sent (a body in an error message): a credential never goes further.
    if (err instanceof AppError) throw new AppError(err.code, redact(err.message, options.headers));
    throw err;
  }
}

async function discoverOnce(endpoint: string, options: DiscoverOptions): Promise<Discovery> {
  // Cancelled before it began (the registry is stopping): nothing is started.
  if (options.signal?.aborted) throw new AppError("unavailable", `discovery of "${endpoint}" was cancelled`);
  const url = new URL(endpoint);
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(), options.timeoutMs);
  const cancel = () => deadline.abort();
  options.signal?.addEventListener("abort", cancel, { once: true });
  const order: Transport[] = url.pathname.replace(/\/+$/, "").endsWith("/sse") ? ["sse"] : ["streamable_http", "sse"];
  const failures: string[] = [];
  try {
    for (const transport of order) {
      let found: Discovery;
      try {
        found = await withDeadline(discoverWith(transport, url, options, deadline.signal), deadline.signal);
      } catch (err) {
        const reason = options.signal?.aborted ? "cancelled" : reasonOf(err, deadline.signal, options.timeoutMs);
        failures.push(`${transport === "sse" ? "SSE" : "streamable HTTP"}: ${reason}`);
        if (deadline.signal.aborted) break;
        continue;
      }
      // Tool names identify tools within a service: a server listing one twice is broken, and storing it would fail.
      const names = new Set<string>();
      for (const tool of found.tools) {
        if (names.has(tool.name)) throw new AppError("unavailable", `the MCP service at "${endpoint}" lists tool "${tool.name}" more than once`);
        names.add(tool.name);
      }
      return found;
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", cancel);
  }
  throw new AppError("unavailable", `no MCP service answered at "${endpoint}" (${failures.join("; ")})`);
}

async function discoverWith(transport: Transport, url: URL, options: DiscoverOptions, signal: AbortSignal): Promise<Discovery> {
  // Every request of this discovery carries the caller's headers and dies with the deadline.
  const fetchWith = (input: string | URL, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    for (const [k, v] of Object.entries(options.headers ?? {})) headers.set(k, v);
    return fetch(input, { ...init, headers, signal: init?.signal ? AbortSignal.any([init.signal, signal]) : signal });
  };
  const client = new Client({ name: "mcp-registry-discovery", version: "1.0.0" });
  const t = transport === "sse" ? new SSEClientTransport(url, { fetch: fetchWith }) : new StreamableHTTPClientTransport(url, { fetch: fetchWith });
  const requestOptions = { signal, timeout: options.timeoutMs };
  try {
    await client.connect(t, requestOptions);
    const tools: DiscoveredTool[] = [];
    const cursors = new Set<string>();
    let cursor: string | undefined;
    // A server without the tools capability (resources or prompts only) simply has no tools.
    const hasTools = Boolean(client.getServerCapabilities()?.tools);
    for (let page = 0; hasTools && page < MAX_PAGES; page++) {
      const result = await client.listTools(cursor ? { cursor } : {}, requestOptions);
      for (const tool of result.tools) tools.push(keepTool(tool));
      // A cursor seen before would only list the same pages again.
      if (!result.nextCursor || cursors.has(result.nextCursor)) break;
      cursor = result.nextCursor;
      cursors.add(cursor);
    }
    const description = options.wantDescription ? await readDescription(client, requestOptions) : "";
    return { transport, tools, description };
  } finally {
    await client.close().catch(() => {});
  }
}

function keepTool(tool: Tool): DiscoveredTool {
  return {
    name: tool.name,
    title: tool.title ?? tool.annotations?.title ?? null,
    description: tool.description ?? "",
    inputSchema: tool.inputSchema,
    outputSchema: tool.outputSchema ?? null,
    annotations: tool.annotations ?? null,
  };
}

// The description comes from a resource named service_description, else the server's instructions.
// A missing or broken resource never fails discovery.
async function readDescription(client: Client, requestOptions: { signal: AbortSignal; timeout: number }): Promise<string> {
  try {
    if (client.getServerCapabilities()?.resources) {
      let cursor: string | undefined;
      for (let page = 0; page < MAX_PAGES; page++) {
        const { resources, nextCursor } = await client.listResources(cursor ? { cursor } : {}, requestOptions);
        const found = resources.find((r) => r.name === "service_description" || /[/:]service_description$/.test(r.uri));
        if (found) {
          const { contents } = await client.readResource({ uri: found.uri }, requestOptions);
          const text = contents.map((c) => ("text" in c && typeof c.text === "string" ? c.text : "")).join("\n").trim();
          if (text) return text;
          break;
        }
        cursor = nextCursor;
        if (!cursor) break;
      }
    }
  } catch {
    // fall through to the instructions
  }
  return client.getInstructions()?.trim() || FALLBACK_DESCRIPTION;
}

// Blanks out every header value, and the credential after its scheme ("Bearer <token>"), in a message.
function redact(message: string, headers: Record<string, string> | undefined): string {
  const secrets = Object.values(headers ?? {}).flatMap((value) => [value, value.replace(/^\S+\s+/, "")]).filter((s) => s.length >= 4);
  return secrets.sort((a, b) => b.length - a.length).reduce((text, secret) => text.replaceAll(secret, "***"), message);
}

function withDeadline<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new Error("deadline"));
    // Handled first, whatever happens next: work that fails after the deadline must not fail unobserved.
    work.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

const NETWORK_REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host not found",
  ECONNRESET: "connection reset",
};

// A short, safe explanation of why a connection failed (no stack, no internals of ours).
function reasonOf(err: unknown, deadline: AbortSignal, timeoutMs: number): string {
  if (deadline.aborted) return `no answer within ${timeoutMs / 1000} s`;
  // fetch hides the network error code in its cause chain; the SSE transport keeps it only in its message.
  for (let e = err as { message?: string; code?: unknown; cause?: unknown } | undefined, depth = 0; e && depth < 5; e = e.cause as typeof e, depth++) {
    const code = typeof e.code === "string" ? e.code : /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ECONNRESET)\b/.exec(String(e.message))?.[1];
    if (code) return NETWORK_REASONS[code] ?? code;
  }
  // The SDK's transport errors carry the HTTP status of a refused request as their code.
  const status = (err as { code?: unknown })?.code;
  if ((err instanceof StreamableHTTPError || err instanceof SseError) && typeof status === "number" && status >= 100) return `HTTP ${status}`;
  const message = String((err as Error)?.message ?? err).split("\n")[0].slice(0, 300);
  return message || "unknown error";
}
