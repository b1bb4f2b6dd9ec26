/** Discovery: connect to an MCP service over HTTP, read its whole tool catalogue and its description. */
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { SSEClientTransport, SseError } from "@modelcontextprotocol/sdk/client/sse.js";
import type { AnySchema, SchemaOutput } from "@modelcontextprotocol/sdk/server/zod-compat.js";
import { ListResourcesResultSchema, ListToolsResultSchema, ReadResourceResultSchema, type ServerCapabilities, type Tool } from "@modelcontextprotocol/sdk/types.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { type DiscoveryLimits, loadConfig } from "../../shared/config.ts";
import { AppError } from "../../shared/errors.ts";
import { initializeSession, postRpc, resultOf, sameOriginFetch } from "../../shared/post.ts";

type Transport = "streamable_http" | "sse";

/** One tool as the registry keeps it. */
type DiscoveredTool = {
  name: string;
  title: string | null;
  description: string;
  inputSchema: Tool["inputSchema"];
  outputSchema: Tool["outputSchema"] | null;
  annotations: Tool["annotations"] | null;
};

/** A listed tool the registry did not keep: its name as safe text (see shownName) and why. */
export type SkippedTool = { name: string; reason: string };

/** `version`: what the service reports as serverInfo.version when it is a version the registry API can show (reportedVersion), else null. */
export type Discovery = { transport: Transport; tools: DiscoveredTool[]; skipped: SkippedTool[]; description: string; version: string | null };

export type DiscoverOptions = {
  timeoutMs: number;
  /** Read a description from the service (resource, then instructions) instead of using the caller's. */
  wantDescription: boolean;
  /** Extra headers, e.g. the Authorization a service needs before it lists its tools (never shown in an error). */
  headers?: Record<string, string>;
  /** Cancels the discovery early (the registry is stopping). */
  signal?: AbortSignal;
  /** What the service may bring in (ctx.config.limits); the configuration's defaults when left out. */
  limits?: DiscoveryLimits;
};

const CLIENT_INFO = { name: "mcp-registry-discovery", version: "1.0.0" };
// One for every SSE discovery: the SDK client builds an Ajv instance of its own otherwise. Discovery
// validates nothing with it (tools/list is read as a plain request).
const VALIDATOR = new AjvJsonSchemaValidator();

/** Used when a service offers neither a service_description resource nor instructions. */
export const FALLBACK_DESCRIPTION = "No description was provided for this service.";

/** Why a tool with a name outside the MCP tool-name rules (2025-11-25: 1 to 128 of A-Z a-z 0-9 _ - .) is skipped. */
export const BAD_NAME = "not a valid tool name: 1-128 of A-Za-z0-9_-.";
const TOOL_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * A name fit for a message, a log line or a result: JSON-escaped, every character outside printable ASCII
 * as \uXXXX (control characters, ANSI escapes, bidi controls never reach anyone raw), cut to 64
 * characters with "…" after a cut. A valid tool name is shown as it is.
 */
export function shownName(name: string): string {
  const cut = name.length > 64;
  const escaped = JSON.stringify(name.slice(0, 64))
    .slice(1, -1)
    .replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
  return cut ? `${escaped}…` : escaped;
}

/**
 * Connects to `endpoint` (streamable HTTP, falling back to SSE; SSE directly for a path ending in /sse),
 * reads every page of tools/list and, if asked, the description. Throws AppError("unavailable") with the
 * reason (header values blanked out); never takes longer than the timeout and always closes what it opened.
 * A service past one of the limits is refused as a whole (too many tools or pages, too large an answer or
 * description of its own); a tool with a bad name or an oversized field is skipped with a reason.
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

type RequestOptions = { signal: AbortSignal; timeout: number };

/** How one discovery refuses a service past a limit: the first refusal is kept and stops everything at once. */
type Refusal = { error?: AppError; refuse(what: string): AppError };

async function discoverOnce(endpoint: string, options: DiscoverOptions): Promise<Discovery> {
  // Cancelled before it began (the registry is stopping): nothing is started.
  if (options.signal?.aborted) throw new AppError("unavailable", `discovery of "${endpoint}" was cancelled`);
  // Stored before endpoints were checked (an old import's local path): said plainly, never run.
  if (!URL.canParse(endpoint) || !/^https?:$/.test(new URL(endpoint).protocol))
    throw new AppError("invalid_input", `the endpoint "${endpoint}" is not an http(s) URL; set one with update_service`);
  const url = new URL(endpoint);
  // A limit can be crossed inside the SDK (a body read by its transport) where a thrown error may never reach
  // us: the refusal is kept here and aborts the deadline, so every request ends now and the refusal is reported.
  const refusing = new AbortController();
  const refusal: Refusal = {
    refuse(what) {
      refusal.error ??= new AppError("unavailable", `the MCP service at "${endpoint}" ${what}`);
      refusing.abort();
      return refusal.error;
    },
  };
  // Ends every request of this discovery: the timeout, a refusal, or the caller cancelling (the registry
  // stopping). One controller and a timer of our own: Node 20 holds the sources of AbortSignal.any()
  // weakly, so an AbortSignal.timeout() among them was collected and never fired, and a service that
  // accepted the connection and never answered held its discovery (a refresher's slot) for good.
  const ending = new AbortController();
  const timer = setTimeout(() => ending.abort(), options.timeoutMs);
  const cancel = () => ending.abort();
  refusing.signal.addEventListener("abort", cancel, { once: true });
  options.signal?.addEventListener("abort", cancel, { once: true });
  if (options.signal?.aborted) cancel();
  const deadline = ending.signal;
  const order: Transport[] = url.pathname.replace(/\/+$/, "").endsWith("/sse") ? ["sse"] : ["streamable_http", "sse"];
  const failures: string[] = [];
  try {
    for (const transport of order) {
      try {
        return await withDeadline(discoverWith(transport, url, options, deadline, refusal), deadline);
      } catch (err) {
        // A service past a limit is refused, not tried again over the other transport.
        if (refusal.error) throw refusal.error;
        const reason = options.signal?.aborted ? "cancelled" : reasonOf(err, deadline, options.timeoutMs, options.headers);
        failures.push(`${transport === "sse" ? "SSE" : "streamable HTTP"}: ${reason}`);
        if (deadline.aborted) break;
      }
    }
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener("abort", cancel);
  }
  throw new AppError("unavailable", `no MCP service answered at "${endpoint}" (${failures.join("; ")})`);
}

/** What discovery asks of a service once a session is open, whichever the transport. */
type Session = {
  capabilities: ServerCapabilities | undefined;
  instructions: string | undefined;
  version: unknown;
  request<S extends AnySchema>(method: string, params: Record<string, unknown>, schema: S): Promise<SchemaOutput<S>>;
  close(): Promise<void>;
};

async function discoverWith(transport: Transport, url: URL, options: DiscoverOptions, signal: AbortSignal, refusal: Refusal): Promise<Discovery> {
  // Left out by a direct caller: the defaults of the configuration, never no limit.
  const limits = options.limits ?? loadConfig({}).limits;
  const tooLarge = () => refusal.refuse(`answered with more than ${limits.answerBytes} bytes (REGISTRY_MAX_DISCOVERY_BYTES)`);
  const open = transport === "sse" ? openSse : openStreamableHttp;
  const session = await open(url, options, signal, limits.answerBytes, tooLarge);
  try {
    const tools: DiscoveredTool[] = [];
    const skipped: SkippedTool[] = [];
    const names = new Set<string>();
    let catalogueBytes = 0;
    const cursors = new Set<string>();
    let cursor: string | undefined;
    // A server without the tools capability (resources or prompts only) simply has no tools.
    const hasTools = Boolean(session.capabilities?.tools);
    for (let page = 0; hasTools; page++) {
      if (page === limits.pages) throw refusal.refuse(`lists tools on more than ${limits.pages} pages (REGISTRY_MAX_DISCOVERY_PAGES)`);
      // A plain request, not the SDK client's listTools(): that one compiles every outputSchema into a
      // validator (Ajv, synchronously), which costs the event loop dearly for a large catalogue and is never used here.
      const result = await session.request("tools/list", cursor ? { cursor } : {}, ListToolsResultSchema);
      // Counted before anything is kept: a service listing too many is refused with the first page past the limit.
      if (names.size + result.tools.length > limits.tools) throw refusal.refuse(`lists more than ${limits.tools} tools (REGISTRY_MAX_TOOLS)`);
      for (const tool of result.tools) {
        // Tool names identify tools within a service: a server listing one twice is broken, and storing it would fail.
        if (names.has(tool.name)) throw refusal.refuse(`lists tool "${shownName(tool.name)}" more than once`);
        names.add(tool.name);
        const { reason, bytes } = measure(tool, limits);
        if (reason) {
          skipped.push({ name: shownName(tool.name), reason });
          continue;
        }
        // Each field within its bound is not enough: a thousand tools at every bound are hundreds of MB to store.
        catalogueBytes += bytes;
        if (catalogueBytes > limits.catalogueBytes)
          throw refusal.refuse(`lists tool definitions of more than ${limits.catalogueBytes} bytes in all (REGISTRY_MAX_CATALOGUE_BYTES)`);
        tools.push(keepTool(tool));
      }
      // A cursor seen before would only list the same pages again.
      if (!result.nextCursor || cursors.has(result.nextCursor)) break;
      cursor = result.nextCursor;
      cursors.add(cursor);
    }
    const description = options.wantDescription ? await readDescription(session, limits.pages) : "";
    // The operator asked for the service's own description: one too long is refused with what to do instead.
    if (utf8Bytes(description) > limits.descriptionBytes) {
      throw refusal.refuse(`has a description of more than ${limits.descriptionBytes} bytes (REGISTRY_MAX_DESCRIPTION_BYTES); give one with description`);
    }
    return { transport, tools, skipped, description, version: reportedVersion(session.version) };
  } finally {
    await session.close().catch(() => {});
  }
}

type Open = (url: URL, options: DiscoverOptions, signal: AbortSignal, answerBytes: number, tooLarge: () => Error) => Promise<Session>;

/**
 * A session over streamable HTTP as plain POSTs on kept-alive connections (shared/post.ts), not the SDK client
 * over fetch, which cost about 3.5 times the CPU for a 10-tool discovery (docs/performance.md). Every request
 * may be sent again on a new connection when a kept-alive one turns out closed: none changes anything.
 */
const openStreamableHttp: Open = async (url, options, signal, answerBytes, tooLarge) => {
  const target = { url, headers: options.headers ?? {}, limit: answerBytes, tooLarge, signal, repeatable: true };
  const { init, headers } = await initializeSession(target, CLIENT_INFO);
  let nextId = 1;
  return {
    capabilities: init.capabilities,
    instructions: init.instructions,
    version: init.serverInfo?.version,
    request: async (method, params, schema) => resultOf(await postRpc({ ...target, headers, message: { jsonrpc: "2.0", id: nextId++, method, params } }), schema),
    // Nothing to close: the connection stays open for the next request to the service.
    close: async () => {},
  };
};

/** A session over the legacy SSE transport, through the SDK client: its requests travel on the event stream's POST endpoint. */
const openSse: Open = async (url, options, signal, answerBytes, tooLarge) => {
  // Every request carries the caller's headers (never to another origin), dies with the deadline, and has its answer counted.
  const fetchWith = async (input: string | URL, init?: RequestInit) => {
    const headers = new Headers(init?.headers);
    for (const [k, v] of Object.entries(options.headers ?? {})) headers.set(k, v);
    const response = await sameOriginFetch(input, { ...init, headers, signal: init?.signal ? AbortSignal.any([init.signal, signal]) : signal });
    return counted(response, answerBytes, tooLarge);
  };
  const client = new Client(CLIENT_INFO, { jsonSchemaValidator: VALIDATOR });
  const requestOptions = { signal, timeout: options.timeoutMs };
  try {
    await client.connect(new SSEClientTransport(url, { fetch: fetchWith }), requestOptions);
  } catch (err) {
    await client.close().catch(() => {});
    throw err;
  }
  return {
    capabilities: client.getServerCapabilities(),
    instructions: client.getInstructions(),
    version: client.getServerVersion()?.version,
    request: (method, params, schema) => relayed(requestOptions, (opts) => client.request({ method, params }, schema, opts)),
    close: () => client.close(),
  };
};

/**
 * A service's serverInfo.version as the registry keeps it: 1 to 255 printable ASCII characters without
 * spaces, not "latest" and not a range (^1.2, ~1.2, >=1.2, 1.x, 1.*), as server.json's version must be;
 * anything else is null (the registry API shows its fallback).
 */
function reportedVersion(version: unknown): string | null {
  if (typeof version !== "string" || !/^[\x21-\x7e]{1,255}$/.test(version)) return null;
  return isVersionRange(version) ? null : version;
}

/** True for "latest" and for ranges (^1.2, ~1.2, >=1.2, 1.x, 1.*, 1.0 - 2.0, 1 || 2), which server.json refuses as a version. */
export function isVersionRange(version: string): boolean {
  return version === "latest" || /^[\^~<>=]|(^|\.)[xX*](\.|$)|\s-\s|\|\|/.test(version);
}

// Runs one request of many with a signal of its own that follows the discovery's: the SDK adds an abort
// listener to a request's signal and never removes it, so pages would pile them up on one signal.
async function relayed<T>(options: RequestOptions, run: (options: RequestOptions) => Promise<T>): Promise<T> {
  const one = new AbortController();
  const relay = () => one.abort(options.signal.reason);
  if (options.signal.aborted) relay();
  options.signal.addEventListener("abort", relay, { once: true });
  try {
    return await run({ ...options, signal: one.signal });
  } finally {
    options.signal.removeEventListener("abort", relay);
  }
}

/**
 * The response with its body counted while it is read: past `limit` bytes the body errors with `tooLarge()`,
 * so an answer larger than the limit is never held in memory. A declared length past it is refused unread.
 */
export function counted(response: Response, limit: number, tooLarge: () => Error): Response {
  // No body to read, or a redirect whose body the SDK only cancels (and whose url and type it reads).
  if (!response.body || response.status === 204 || response.status === 205 || (response.status >= 300 && response.status < 400)) return response;
  if (Number(response.headers.get("content-length") ?? 0) > limit) {
    response.body.cancel().catch(() => {});
    throw tooLarge();
  }
  let bytes = 0;
  const body = response.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        bytes += chunk.byteLength;
        // Erroring the stream also cancels the connection's body: the rest is never downloaded.
        if (bytes > limit) controller.error(tooLarge());
        else controller.enqueue(chunk);
      },
    }),
  );
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}

// Why a listed tool is not kept (a name outside the MCP rules, a field past its limit), or the bytes it brings.
function measure(tool: Tool, limits: DiscoveryLimits): { reason?: string; bytes: number } {
  if (!TOOL_NAME.test(tool.name)) return { reason: BAD_NAME, bytes: 0 };
  let bytes = 0;
  for (const field of ["title", "description"] as const) {
    const value = tool[field];
    const size = typeof value === "string" ? utf8Bytes(value) : 0;
    if (size > limits.descriptionBytes) return { reason: `${field} of more than ${limits.descriptionBytes} bytes (REGISTRY_MAX_DESCRIPTION_BYTES)`, bytes: 0 };
    bytes += size;
  }
  for (const field of ["inputSchema", "outputSchema", "annotations"] as const) {
    const value = tool[field];
    const size = value === undefined ? 0 : utf8Bytes(JSON.stringify(value));
    if (size > limits.schemaBytes) return { reason: `${field} of more than ${limits.schemaBytes} bytes (REGISTRY_MAX_SCHEMA_BYTES)`, bytes: 0 };
    bytes += size;
  }
  return { bytes };
}

// UTF-8 length of a string without encoding it (a surrogate pair is 4 bytes, 2 per half).
function utf8Bytes(s: string): number {
  let bytes = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    bytes += c < 0x80 ? 1 : c < 0x800 || (c >= 0xd800 && c <= 0xdfff) ? 2 : 3;
  }
  return bytes;
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
async function readDescription(session: Session, maxPages: number): Promise<string> {
  try {
    if (session.capabilities?.resources) {
      let cursor: string | undefined;
      for (let page = 0; page < maxPages; page++) {
        const { resources, nextCursor } = await session.request("resources/list", cursor ? { cursor } : {}, ListResourcesResultSchema);
        const found = resources.find((r) => r.name === "service_description" || /[/:]service_description$/.test(r.uri));
        if (found) {
          const { contents } = await session.request("resources/read", { uri: found.uri }, ReadResourceResultSchema);
          const text = contents
            .map((c) => ("text" in c && typeof c.text === "string" ? c.text : ""))
            .join("\n")
            .trim();
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
  return session.instructions?.trim() || FALLBACK_DESCRIPTION;
}

/** Blanks out every header value, and the credential after its scheme ("Bearer <token>"), in a message. */
export function redact(message: string, headers: Record<string, string> | undefined): string {
  const secrets = Object.values(headers ?? {})
    .flatMap((value) => [value, value.replace(/^\S+\s+/, "")])
    .filter((s) => s.length >= 4);
  return secrets.sort((a, b) => b.length - a.length).reduce((text, secret) => text.replaceAll(secret, "***"), message);
}

/** `work`, or a rejection as soon as `signal` aborts (whatever `work` does afterwards is observed, never unhandled). */
export function withDeadline<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
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

/** A short, safe explanation of why a connection failed (no stack, no internals of ours, no value of `headers`). */
export function reasonOf(err: unknown, deadline: AbortSignal, timeoutMs: number, headers?: Record<string, string>): string {
  if (deadline.aborted) return `no answer within ${timeoutMs / 1000} s`;
  // fetch hides the network error code in its cause chain; the SSE transport keeps it only in its message.
  for (const e of chain(err)) {
    const code = typeof e.code === "string" ? e.code : /\b(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ECONNRESET)\b/.exec(String(e.message))?.[1];
    if (code) return NETWORK_REASONS[code] ?? code;
  }
  // fetch refuses ports browsers block (6000, 6667, ...) and says only "bad port" in its cause.
  if (chain(err).some((e) => /\bbad port\b/.test(String(e.message)))) return "the port is one fetch refuses to connect to (a blocked port); serve the service on another port";
  // The SDK's SSE transport errors carry the HTTP status of a refused request as their code.
  const status = (err as { code?: unknown })?.code;
  if (err instanceof SseError && typeof status === "number" && status >= 100) return `HTTP ${status}`;
  // "fetch failed" and "SSE error: TypeError: fetch failed" say nothing a person can act on. The headers'
  // values are blanked out before the cut: a credential the service echoed must not survive as a prefix.
  const message = redact(String((err as Error)?.message ?? err), headers)
    .split("\n")[0]
    .replace(/^SSE error: /, "")
    .replace(/^(TypeError: )?fetch failed.*$/, "the connection failed")
    .slice(0, 300);
  return printable(message) || "unknown error";
}

/** A service's own words fit for a message or a log line: control, invisible and bidirectional characters as \uXXXX. */
function printable(text: string): string {
  return text.replace(/[\x00-\x1f\x7f-\x9f\p{Cf}\p{Zl}\p{Zp}]/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

// An error and its causes, at most five deep.
function chain(err: unknown): { message?: unknown; code?: unknown }[] {
  const out: { message?: unknown; code?: unknown }[] = [];
  for (let e = err as { message?: unknown; code?: unknown; cause?: unknown } | undefined; e && out.length < 5; e = e.cause as typeof e) out.push(e);
  return out;
}
