/**
 * import_servers: servers from one server.json document, or from an upstream registry speaking the official
 * MCP Registry API v0.1, added as services through the usual discovery. What cannot be served (packages
 * only, a URL that needs values, a header the registry cannot send, a failed discovery) is listed as
 * skipped with the reason; what is already here is unchanged, so importing again changes nothing.
 */
import { eq } from "drizzle-orm";
import * as v from "valibot";
import type { Caller, Ctx, PendingAudit } from "../../shared/context.ts";
import { AppError, logReason } from "../../shared/errors.ts";
import { defineTool } from "../../shared/mcp.ts";
import { MAX_NESTING, nestedWithin, transformOrIssue } from "../../shared/validate.ts";
import { counted, shownName } from "../services/discovery.ts";
import { Endpoint, endpointSpellings } from "../services/endpoint.ts";
import { type AddServiceInput, addService } from "../services/services.ts";
import { chosenRemote, filledUrl, ServerJson } from "./server_json.ts";

/** Servers one call imports from a registry at most; `next_cursor` continues after them. */
const MAX_SERVERS = 100;
/** Pages of an upstream registry one call reads at most. */
const MAX_PAGES = 20;
/** Discoveries an import runs at once. */
const PARALLEL = 4;
// Names shown in the result's sentence (the structured result has them all).
const SHOWN = 10;

/** How long one call starts new work (pages, discoveries), in discovery timeouts (30 s by default): MCP clients wait about a minute for an answer. */
const BUDGET_TIMEOUTS = 3;
/** The longest cursor of an upstream registry the import keeps (inside its own next_cursor). */
const MAX_UPSTREAM_CURSOR = 1000;

// A registry's base URL: http(s), nothing that would carry a credential into logs and the audit trail.
const RegistryUrl = v.pipe(
  v.string("must be a string"),
  v.trim(),
  v.maxLength(2048, "must be at most 2048 characters"),
  transformOrIssue((raw) => {
    const url = URL.canParse(raw) ? new URL(raw) : null;
    if (!url || !/^https?:$/.test(url.protocol)) throw new Error("must be an http(s) URL");
    if (url.username || url.password) throw new Error("must not contain a user name or password");
    if (url.search || url.hash || raw.includes("#")) throw new Error("must not have a query or #fragment: give the registry's base URL, e.g. https://registry.example.com");
    return url.href;
  }),
);

/** Where an import of a registry stands: an upstream cursor (none: the first page) and how many of that page are done. */
type Position = { cursor?: string; skip: number };
const NOT_OURS = "is not a next_cursor import_servers gave";
const encodePosition = (p: Position) => Buffer.from(JSON.stringify({ c: p.cursor, s: p.skip })).toString("base64url");
const Cursor = v.pipe(
  v.string("must be a string"),
  v.maxLength(2048, NOT_OURS),
  transformOrIssue((text): Position => {
    let p: { c?: unknown; s?: unknown };
    try {
      p = JSON.parse(Buffer.from(text, "base64url").toString());
    } catch {
      throw new Error(NOT_OURS);
    }
    const cursorOk = p?.c === undefined || (typeof p.c === "string" && p.c.length <= MAX_UPSTREAM_CURSOR);
    if (!cursorOk || !Number.isInteger(p.s) || (p.s as number) < 0 || (p.s as number) > 100_000) throw new Error(NOT_OURS);
    return { cursor: p.c as string | undefined, skip: p.s as number };
  }),
);

const ImportInput = v.pipe(
  v.object({
    server_json: v.optional(ServerJson),
    registry_url: v.optional(RegistryUrl),
    search: v.optional(v.pipe(v.string("must be a string"), v.maxLength(200, "must be at most 200 characters"))),
    cursor: v.optional(Cursor),
  }),
  v.check(
    (i) => (i.server_json === undefined) !== (i.registry_url === undefined),
    "give either server_json (one server.json document) or registry_url (a registry speaking the MCP Registry API v0.1)",
  ),
  v.check((i) => i.registry_url !== undefined || (i.search === undefined && i.cursor === undefined), "search and cursor go with registry_url"),
);
type ImportInput = v.InferOutput<typeof ImportInput>;

// One answer of GET /v0.1/servers; each server is checked on its own (a bad one is skipped, not fatal).
const UpstreamPage = v.looseObject({
  servers: v.array(v.looseObject({ server: v.unknown(), _meta: v.optional(v.unknown()) }), "must be an array"),
  metadata: v.optional(v.looseObject({ nextCursor: v.optional(v.nullable(v.string("must be a string"))) })),
});
type Upstream = v.InferOutput<typeof UpstreamPage>["servers"][number];

type Outcome =
  | { kind: "added"; name: string; service_name: string; tools: number }
  | { kind: "unchanged"; name: string; service_name: string }
  | { kind: "skipped"; name: string; reason: string };

// The base URL's /v0.1/servers, with the query the import reads it with.
function pageUrl(base: string, cursor: string | undefined, search: string | undefined): URL {
  const url = new URL(`${base.replace(/\/+$/, "").replace(/\/v0\.1(\/servers)?$/, "")}/v0.1/servers`);
  url.searchParams.set("limit", "100");
  url.searchParams.set("version", "latest");
  if (cursor) url.searchParams.set("cursor", cursor);
  if (search) url.searchParams.set("search", search);
  return url;
}

/** One page of an upstream registry, within the discovery timeout and REGISTRY_MAX_DISCOVERY_BYTES; no redirect followed. */
async function fetchPage(ctx: Ctx, base: string, cursor: string | undefined, search: string | undefined) {
  const fail = (why: string) => new AppError("unavailable", `the registry at "${base}" ${why}`);
  const limit = ctx.config.limits.answerBytes;
  let text: string;
  try {
    const response = await fetch(pageUrl(base, cursor, search), {
      redirect: "manual",
      signal: AbortSignal.timeout(ctx.config.discoveryTimeoutMs),
      headers: { accept: "application/json" },
    });
    if (response.status >= 300 && response.status < 400) throw fail("answered with a redirect; give the address it redirects to");
    if (!response.ok) throw fail(`answered HTTP ${response.status} to GET /v0.1/servers`);
    text = await counted(response, limit, () => fail(`answered with more than ${limit} bytes (REGISTRY_MAX_DISCOVERY_BYTES)`)).text();
  } catch (err) {
    if (err instanceof AppError) throw err;
    const reason = (err as Error)?.name === "TimeoutError" ? `within ${ctx.config.discoveryTimeoutMs / 1000} s` : `(${String((err as Error)?.message ?? err)})`;
    // A body past the limit errors the stream with our own refusal, as the cause of fetch's TypeError.
    const cause = (err as { cause?: unknown })?.cause;
    if (cause instanceof AppError) throw cause;
    throw fail(`did not answer ${reason}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw fail("did not answer with JSON");
  }
  if (!nestedWithin(body)) throw fail(`answered JSON nested more than ${MAX_NESTING} levels deep`);
  const page = v.safeParse(UpstreamPage, body);
  if (!page.success) throw fail("did not answer with a server list of the MCP Registry API v0.1 ({servers: [...], metadata})");
  return page.output;
}

/** An upstream server and where it stands in the upstream's listing (an import can go on from there). */
type Placed = { item: Upstream; at: Position };

/**
 * The servers of an upstream registry from `from` on, page after page: at most MAX_SERVERS, MAX_PAGES, and
 * no page started after `deadline`; `next` is where the rest begins (none: the listing ended).
 */
async function upstreamServers(ctx: Ctx, base: string, search: string | undefined, from: Position, deadline: number): Promise<{ servers: Placed[]; next?: Position }> {
  const servers: Placed[] = [];
  const seen = new Set<string>();
  let at = from;
  for (let pages = 0; pages < MAX_PAGES && servers.length < MAX_SERVERS && Date.now() < deadline; pages++) {
    const page = await fetchPage(ctx, base, at.cursor, search);
    for (const [i, item] of page.servers.slice(at.skip).entries()) {
      if (servers.length === MAX_SERVERS) return { servers, next: { cursor: at.cursor, skip: at.skip + i } };
      servers.push({ item, at: { cursor: at.cursor, skip: at.skip + i } });
    }
    const next = page.metadata?.nextCursor || undefined;
    // A cursor seen before would only list the same pages again.
    if (!next || seen.has(next)) return { servers };
    if (next.length > MAX_UPSTREAM_CURSOR)
      throw new AppError("unavailable", `the registry at "${base}" answered a cursor (metadata.nextCursor) of more than ${MAX_UPSTREAM_CURSOR} characters`);
    seen.add(next);
    at = { cursor: next, skip: 0 };
  }
  return { servers, next: at };
}

/** What add_service is given for a server.json, or why it cannot be served here. */
function serviceFor(server: ServerJson): AddServiceInput | string {
  const remote = chosenRemote(server);
  if (!remote) return server.packages?.length ? "only packages (run locally, e.g. stdio): the registry serves remote servers only" : "no remote to connect to";
  const auth = remote.headers?.find((h) => h.name.toLowerCase() === "authorization");
  const unsendable = remote.headers?.find((h) => h !== auth && h.isRequired && !h.value);
  if (unsendable) return `its remote needs the header "${shownName(unsendable.name)}", which the registry cannot send (only Authorization)`;
  let filled: string;
  try {
    filled = filledUrl(remote);
  } catch (err) {
    return `its remote URL ${(err as Error).message}`;
  }
  // The endpoint rules of add_service, length included, apply to the URL as filled in.
  const endpoint = v.safeParse(Endpoint, filled);
  if (!endpoint.success) return `its remote URL ${endpoint.issues[0].message}`;
  const service_name = server.name.replace("/", ".");
  if (service_name.length > 128) return "its name is longer than a service name may be (128 characters)";
  const method = /^basic\s/i.test(auth?.value ?? "") ? "Basic" : "Bearer";
  return {
    service_name,
    endpoint: endpoint.output,
    description: server.description,
    requires_authorization: auth !== undefined,
    method_authorization: auth ? method : "",
    discovery_token: "",
  };
}

// Imports one server: unchanged when a service of its name already has its endpoint, else added (or skipped).
async function importOne(ctx: Ctx, caller: Caller, item: Upstream | { server: ServerJson }, source: string): Promise<Outcome> {
  const status = (item as { _meta?: Record<string, { status?: unknown }> })._meta?.["io.modelcontextprotocol.registry/official"]?.status;
  const shown = typeof (item.server as { name?: unknown })?.name === "string" ? shownName((item.server as { name: string }).name) : "(no name)";
  if (status === "deleted") return { kind: "skipped", name: shown, reason: "deleted upstream" };
  const parsed = v.safeParse(ServerJson, item.server);
  if (!parsed.success) {
    const problem = parsed.issues[0];
    // The path holds the document's own keys: shown escaped, as names are.
    const where = problem.path?.map((p) => shownName(String(p.key))).join(".");
    return { kind: "skipped", name: shown, reason: `not a valid server.json: ${where ? `${where}: ` : ""}${problem.message}` };
  }
  const name = parsed.output.name;
  const input = serviceFor(parsed.output);
  if (typeof input === "string") return { kind: "skipped", name, reason: input };
  const { services } = ctx.tables;
  const [same] = await ctx.db.select({ endpoint: services.endpoint }).from(services).where(eq(services.name, input.service_name)).limit(1);
  if (same && endpointSpellings(input.endpoint).includes(same.endpoint)) return { kind: "unchanged", name, service_name: input.service_name };
  const audit: PendingAudit = {
    entry: { caller, action: "add_service", target: `service_name=${input.service_name}`, outcome: "ok", detail: `imported from ${source}`.slice(0, 500) },
    written: false,
  };
  try {
    const { tools } = await addService(ctx, input, audit);
    return { kind: "added", name, service_name: input.service_name, tools };
  } catch (err) {
    if (err instanceof AppError) return { kind: "skipped", name, reason: err.message.replace(/^Cannot add service "[^"]*": /, "") };
    ctx.log.error("Import of a server failed", { server: name, reason: logReason(err) });
    return { kind: "skipped", name, reason: "an unexpected error (the registry's log has it)" };
  }
}

/** Runs `work` over `items`, PARALLEL at a time, starting none after `deadline`: the results of those started (a prefix), in order. */
async function eachLimited<T, R>(items: T[], work: (item: T) => Promise<R>, deadline: number): Promise<R[]> {
  const results: R[] = [];
  let started = 0;
  const worker = async () => {
    // The first always starts, so every call makes progress, however long the pages took.
    while (started < items.length && (started === 0 || Date.now() < deadline)) {
      const i = started++;
      results[i] = await work(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
  return results.slice(0, started);
}

async function importServers(ctx: Ctx, caller: Caller, input: ImportInput, source: string): Promise<Tally & { next_cursor?: string }> {
  // What is under way at the deadline finishes; next_cursor goes on from the first server not started.
  const deadline = Date.now() + BUDGET_TIMEOUTS * ctx.config.discoveryTimeoutMs;
  if (!input.registry_url) return tally([await importOne(ctx, caller, { server: input.server_json! }, source)]);
  const { servers, next } = await upstreamServers(ctx, input.registry_url, input.search, input.cursor ?? { skip: 0 }, deadline).catch((err) => {
    throw err instanceof AppError ? new AppError(err.code, `Cannot import servers: ${err.message}`) : err;
  });
  const outcomes = await eachLimited(servers, (placed) => importOne(ctx, caller, placed.item, source), deadline);
  // Out of time before the last server: the next call begins with the first one not started.
  const rest = outcomes.length < servers.length ? servers[outcomes.length].at : next;
  return { ...tally(outcomes), ...(rest ? { next_cursor: encodePosition(rest) } : {}) };
}

type Tally = ReturnType<typeof tally>;

// Outcomes by kind, in the order the servers came.
function tally(outcomes: Outcome[]) {
  const of = <K extends Outcome["kind"]>(kind: K) => outcomes.filter((o): o is Extract<Outcome, { kind: K }> => o.kind === kind).map(({ kind: _, ...rest }) => rest);
  return { added: of("added"), unchanged: of("unchanged"), skipped: of("skipped") };
}

type Imported = Awaited<ReturnType<typeof importServers>>;

// The result as one sentence: counts, the first names of each kind, and where to go on.
function describe(source: string, r: Imported): string {
  const list = <T>(items: T[], show: (item: T) => string) =>
    items.length ? `: ${items.slice(0, SHOWN).map(show).join(", ")}${items.length > SHOWN ? ` and ${items.length - SHOWN} more` : ""}` : "";
  return [
    `Imported from ${source}: ${r.added.length} added${list(r.added, (a) => `"${a.service_name}" (${a.tools} tool${a.tools === 1 ? "" : "s"})`)}`,
    `${r.unchanged.length} unchanged${list(r.unchanged, (u) => `"${u.service_name}"`)}`,
    `${r.skipped.length} skipped${list(r.skipped, (s) => `"${s.name}" (${s.reason})`)}`,
    ...(r.next_cursor ? [`more remain: import again with cursor "${r.next_cursor}"`] : []),
  ]
    .join("; ")
    .concat(".");
}

export const importTool = defineTool({
  name: "import_servers",
  title: "Import servers",
  description:
    "Add services from the official MCP Registry format: server_json (one server.json document), or registry_url (every server of a registry " +
    `speaking the MCP Registry API v0.1, optionally matching search; at most ${MAX_SERVERS} per call, next_cursor goes on). Each server with a ` +
    "streamable-http or sse remote is discovered and added; servers with packages only, a URL that needs values, or a failed discovery are skipped " +
    "with the reason; servers already registered are unchanged.",
  input: ImportInput,
  output: v.object({
    added: v.array(v.object({ name: v.string(), service_name: v.string(), tools: v.number() })),
    unchanged: v.array(v.object({ name: v.string(), service_name: v.string() })),
    skipped: v.array(v.object({ name: v.string(), reason: v.string() })),
    next_cursor: v.optional(v.string()),
  }),
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: true, openWorldHint: true },
  async run(ctx, input, audit) {
    const source = input.registry_url ?? `server.json "${input.server_json!.name}"`;
    audit.entry.target = input.registry_url ? `registry_url=${input.registry_url}`.slice(0, 200) : `server=${input.server_json!.name}`;
    const result = await importServers(ctx, audit.entry.caller, input, source);
    audit.entry.detail = `added ${result.added.length}, unchanged ${result.unchanged.length}, skipped ${result.skipped.length}`;
    return { text: describe(source, result), data: result };
  },
});
