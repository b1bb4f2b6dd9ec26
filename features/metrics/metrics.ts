/**
 * Metrics: GET /metrics in the Prometheus text format 0.0.4, for an admin key or a key of
 * REGISTRY_METRICS_KEY (features/access decides). The counts are this process's since it started:
 * instances sharing a database are scraped one by one and summed in queries (sum by instance). Counted
 * as things happen, in memory: HTTP requests by route pattern, MCP tool calls, gateway calls, refreshes,
 * database errors (shared/errors.ts counts those). Read at scrape time with one query: services,
 * unreachable services, pending tool changes, audit rows, the same for every instance of a shared
 * database (take max, not sum). And the process's memory, CPU time and uptime.
 *
 * Every label value comes from a bounded set: route patterns (never a raw path), the registry's own tool
 * names, error codes, and at most MAX_GATEWAY_SERVICES service names. A series is made the first time
 * its labels occur and found again by map lookups, so counting builds no text.
 */
import { count, sql } from "drizzle-orm";
import { type Context, Hono, type MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import type { Ctx } from "../../shared/context.ts";
import { AppError, databaseErrors, recognizeError } from "../../shared/errors.ts";
import type { Feature } from "../../shared/feature.ts";
import type { AppEnv } from "../../shared/http.ts";
import { REGISTRY_VERSION } from "../../shared/mcp.ts";
import { Counter2, CounterFamily, HistogramFamily, header, type Observed, observe, type Sample, sampleLine } from "./exposition.ts";

/** HTTP latency buckets, seconds: /health answers in well under a millisecond, a discovery in seconds. */
const HTTP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Gateway latency buckets, seconds: a downstream round trip, up to REGISTRY_GATEWAY_TIMEOUT (30 s by default). */
const GATEWAY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Most services with gateway series of their own; calls to further ones count under OTHER_SERVICE. */
export const MAX_GATEWAY_SERVICES = 1000;
/** How long the scrape's query may take; past it the database gauges are left out (mcp_registry_database_up 0). */
const QUERY_DEADLINE_MS = 2000;

/** The route label of a request no route matched (an unknown path, or a method the path does not serve). */
const UNMATCHED = "unmatched";
/** The tool label of a call naming no tool of the registry. */
const UNKNOWN_TOOL = "unknown";
/** The service label of a gateway call naming no tool of the user's listing (so no service). */
const NO_SERVICE = "__none__";
/** The service label of gateway calls to services past MAX_GATEWAY_SERVICES. */
const OTHER_SERVICE = "__other__";
const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"];
const METHOD_INDEX = new Map(METHODS.map((m, i) => [m, i]));

const httpRequests = new CounterFamily("mcp_registry_http_requests_total", `HTTP requests answered, by method, route pattern ("${UNMATCHED}": no route) and status.`);
const httpDurations = new HistogramFamily(
  "mcp_registry_http_request_duration_seconds",
  "Time from a request's arrival to its response (headers; a stream's body is not waited for), by method and route pattern.",
  HTTP_BUCKETS,
);
const toolCalls = new Counter2(
  "mcp_registry_tool_calls_total",
  `Calls of the registry's MCP tools (/mcp, the web console), by tool ("${UNKNOWN_TOOL}": no such tool) and outcome (ok or the error code).`,
  ["tool", "outcome"],
);
const gatewayCalls = new CounterFamily(
  "mcp_registry_gateway_calls_total",
  `Gateway tool calls, by service ("${NO_SERVICE}": no tool of that name for the user; "${OTHER_SERVICE}": past ${MAX_GATEWAY_SERVICES} services) and outcome (ok, tool_error, timeout, token_missing, internal or the error code).`,
);
const gatewayDurations = new HistogramFamily(
  "mcp_registry_gateway_call_duration_seconds",
  "Time of a gateway tool call, downstream round trip included, by service.",
  GATEWAY_BUCKETS,
);
const refreshes = new Counter2(
  "mcp_registry_refreshes_total",
  "Re-discoveries of stored services, by trigger (background: the refresher; manual: refresh_service) and outcome (ok or the error code; unavailable: the service could not be discovered).",
  ["trigger", "outcome"],
);

type RouteSeries = { requests: Map<number, Sample>; durations: (Observed | undefined)[] };
// By route pattern; within it requests by method index × 1000 + status, durations by method index.
const byRoute = new Map<string, RouteSeries>();

/** Middleware: counts every request by method, route pattern and status, and observes its latency. */
export function httpMetrics(): MiddlewareHandler<AppEnv> {
  return async function httpMetrics(c, next) {
    const started = performance.now();
    // The app's onError turns a thrown error into the response before it reaches here.
    await next();
    countRequest(c.req.method, routeOf(c), c.res.status, (performance.now() - started) / 1000);
  };
}

function countRequest(method: string, route: string, status: number, seconds: number): void {
  let r = byRoute.get(route);
  if (!r) {
    r = { requests: new Map(), durations: [] };
    byRoute.set(route, r);
  }
  const m = METHOD_INDEX.get(method) ?? METHODS.length - 1;
  const key = m * 1000 + status;
  let requests = r.requests.get(key);
  if (!requests) {
    requests = httpRequests.add({ method: METHODS[m], route, status: String(status) });
    r.requests.set(key, requests);
  }
  requests.value++;
  let durations = r.durations[m];
  if (!durations) {
    durations = httpDurations.add({ method: METHODS[m], route });
    r.durations[m] = durations;
  }
  observe(durations, seconds);
}

const isWildcard = (path: string) => path === "*" || path === "/*";

/**
 * The route pattern of a request, never its path: the pattern of the handler that answered, or, when a
 * middleware answered (access refused the request, the body was too large), of the route the request was
 * for; UNMATCHED when only the app-wide middleware matched.
 */
function routeOf(c: Context<AppEnv>): string {
  const matched = matchedRoutes(c);
  const answering = matched[c.req.routeIndex]?.path;
  if (answering !== undefined && !isWildcard(answering)) return answering;
  const target = matched[matched.length - 1]?.path;
  return target === undefined || isWildcard(target) ? UNMATCHED : target;
}

/** The outcome label of a failure: its error code, or "internal" for an unexpected error. */
export function outcomeOf(err: unknown): string {
  const known = recognizeError(err);
  return known instanceof AppError ? known.code : "internal";
}

/** Counts a call of the registry's tool `tool` (undefined: the caller named no tool) with its outcome. */
export function countToolCall(tool: string | undefined, outcome: string): void {
  toolCalls.inc(tool ?? UNKNOWN_TOOL, outcome);
}

type ServiceSeries = { name: string; outcomes: Map<string, Sample>; duration: Observed };
const byService = new Map<string, ServiceSeries>();

/** Counts a gateway call to `service` (undefined: the name matched no tool of the user) with its outcome and duration. */
export function countGatewayCall(service: string | undefined, outcome: string, seconds: number): void {
  const s = serviceSeries(service ?? NO_SERVICE);
  let sample = s.outcomes.get(outcome);
  if (!sample) {
    sample = gatewayCalls.add({ service: s.name, outcome });
    s.outcomes.set(outcome, sample);
  }
  sample.value++;
  observe(s.duration, seconds);
}

// A service's series; past MAX_GATEWAY_SERVICES names, OTHER_SERVICE's. A service really named like a
// fold label shares its series (never a second series with the same labels).
function serviceSeries(name: string): ServiceSeries {
  let s = byService.get(name);
  if (s) return s;
  if (byService.size >= MAX_GATEWAY_SERVICES && name !== NO_SERVICE && name !== OTHER_SERVICE) return serviceSeries(OTHER_SERVICE);
  s = { name, outcomes: new Map(), duration: gatewayDurations.add({ service: name }) };
  byService.set(name, s);
  return s;
}

/** What started a refresh: the background refresher, or a caller (refresh_service). */
export type RefreshTrigger = "background" | "manual";

/** Counts a refresh of a stored service with its outcome. */
export function countRefresh(trigger: RefreshTrigger, outcome: string): void {
  refreshes.inc(trigger, outcome);
}

type Stored = { services: number; unreachable: number; pending: number; auditRows: number };

/**
 * The database gauges, in one query: services counted, pending changes counted (both small tables), and
 * the audit trail's rows as the span of its ids, max − min + 1, each in its own subquery so that both
 * engines answer it from the primary key's ends (measured on 100,000 rows: 0.05 ms on SQLite, 1 ms on
 * PostgreSQL, where count(*) took 1 ms and 11 ms and grows with the table; max and min in one select made
 * SQLite scan it, 12 ms). Retention deletes the oldest rows, so the span is exact but for ids an insert
 * that failed left unused.
 */
async function stored(ctx: Ctx): Promise<Stored> {
  const { services, toolChanges, auditEvents } = ctx.tables;
  const [row] = await ctx.db
    .select({
      services: count(),
      unreachable: sql<number>`coalesce(sum(case when ${services.status} = 'unreachable' then 1 else 0 end), 0)`.mapWith(Number),
      pending: sql<number>`(select count(*) from ${toolChanges} where ${toolChanges.status} = 'pending')`.mapWith(Number),
      auditRows: sql<number>`coalesce((select max(${auditEvents.id}) from ${auditEvents}) - (select min(${auditEvents.id}) from ${auditEvents}) + 1, 0)`.mapWith(Number),
    })
    .from(services);
  return row;
}

function within<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}

const DENO = (globalThis as { Deno?: { version: { deno: string } } }).Deno;
const RUNTIME = DENO ? "deno" : "node";
const RUNTIME_VERSION = DENO?.version.deno ?? process.versions.node;
const STARTED_AT = Date.now() / 1000 - process.uptime();

function gauge(out: string[], name: string, help: string, value: number, labels = ""): void {
  header(out, name, help, "gauge");
  out.push(sampleLine(name, labels, value));
}

/** The whole exposition: the database is asked first, so the counters are read together, after it. */
async function scrape(ctx: Ctx): Promise<string> {
  let db: Stored | null = null;
  try {
    db = await within(stored(ctx), QUERY_DEADLINE_MS);
  } catch (err) {
    // Counted as a database error if it is one; the gauges below say the rest.
    recognizeError(err);
  }
  const out: string[] = [];
  httpRequests.render(out);
  httpDurations.render(out);
  toolCalls.render(out);
  gatewayCalls.render(out);
  gatewayDurations.render(out);
  refreshes.render(out);
  const errors = "mcp_registry_database_errors_total";
  header(out, errors, "Database errors met: unreachable (connection lost or refused, database gone), busy (a local SQLite file's write lock not had in time).", "counter");
  out.push(sampleLine(errors, 'kind="unreachable"', databaseErrors.unreachable), sampleLine(errors, 'kind="busy"', databaseErrors.busy));
  gauge(
    out,
    "mcp_registry_database_up",
    `1 when this scrape's database query answered within ${QUERY_DEADLINE_MS / 1000} s, else 0 (and the database gauges are left out).`,
    db ? 1 : 0,
  );
  if (db) {
    gauge(out, "mcp_registry_services", "Services in the catalogue.", db.services);
    gauge(out, "mcp_registry_services_unreachable", "Services whose last discovery failed.", db.unreachable);
    gauge(out, "mcp_registry_tool_changes_pending", "Tool changes held for an admin's review (list_tool_changes).", db.pending);
    gauge(out, "mcp_registry_audit_rows", "Rows of the audit trail (the span of its ids).", db.auditRows);
  }
  const memory = process.memoryUsage();
  const cpu = process.cpuUsage();
  gauge(out, "mcp_registry_process_resident_memory_bytes", "Resident memory of the process.", memory.rss);
  gauge(out, "mcp_registry_process_heap_used_bytes", "JavaScript heap in use.", memory.heapUsed);
  header(out, "mcp_registry_process_cpu_seconds_total", "CPU time of the process, user and system.", "counter");
  out.push(sampleLine("mcp_registry_process_cpu_seconds_total", "", (cpu.user + cpu.system) / 1e6));
  gauge(out, "mcp_registry_process_start_time_seconds", "When the process started, seconds since the Unix epoch.", STARTED_AT);
  gauge(out, "mcp_registry_process_uptime_seconds", "Seconds since the process started.", process.uptime());
  gauge(out, "mcp_registry_info", "The registry's version and runtime (always 1).", 1, `version="${REGISTRY_VERSION}",runtime="${RUNTIME}",runtime_version="${RUNTIME_VERSION}"`);
  return `${out.join("\n")}\n`;
}

const routes = new Hono<AppEnv>().get("/metrics", async (c) =>
  c.body(await scrape(c.get("ctx")), 200, { "Content-Type": "text/plain; version=0.0.4; charset=utf-8", "Cache-Control": "no-store" }),
);

/** GET /metrics; the counting is done by httpMetrics and the count functions where things happen. */
export const metrics: Feature = { name: "metrics", routes };
