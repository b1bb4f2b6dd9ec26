/**
 * `npm run bench` / `deno task bench`: the registry under load, against baselines measured in the same run.
 *
 * The registry and the baselines each run in their own process, on the runtime running this script
 * (Node or Deno; the registry as `npm start` or `deno task start` runs it, the baselines with the same
 * runtime flags), served by @hono/node-server; autocannon drives them from this process, on 127.0.0.1
 * only, with bounded connections and duration. Prints a table with PASS/MISS per target and
 * writes the results as JSON. Options: --quick, --out <file> (or BENCH_OUT), --duration <s>,
 * --connections <n>, --iterations <n>, --calls <n>, --database <postgres://...> (a temporary database on that
 * server), --shape small|large; for the large shape --refresh-interval <s> (120), --discovery-timeout <s> (5),
 * --refresh-due now|spread, --fixed-seconds <s> (bench/large.ts).
 *
 * The gateway (POST /gateway/mcp) is measured against the bare SDK baseline it forwards to: that server is
 * registered as two services (its /mcp with the echo tool, its /many/mcp with 500 tools), each on a role of
 * a bench user, through the registry's admin tools; then the same tools/call goes through the gateway and
 * straight to the server, under load and sequentially (median of --calls calls each, interleaved).
 *
 * --shape large measures the small shape first, then the large shape (bench/large.ts) in a fresh registry
 * on a fresh database, with the same baseline processes, and compares the two.
 */
import { Buffer } from "node:buffer";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { temporaryPostgres } from "../shared/db/temporary.ts";
import { type LargeReport, formatLarge, runLarge } from "./large.ts";
import {
  ADMIN,
  AGENT,
  agentScenarios,
  baselineScenarios,
  type Child,
  DENO,
  freePort,
  HONO,
  type Load,
  loadRow,
  log,
  MCP_HEADERS,
  type Measured,
  mean,
  meanOf,
  median,
  measure,
  peakRss,
  percentile,
  ROOT,
  registryEnv,
  result,
  rpc,
  rss,
  runPaired,
  type ScenarioResult,
  SDK_CALL,
  SDK_LIST,
  type Settings,
  scriptCommand,
  seedDatabase,
  startChild,
  stealNote,
  startCommand,
  startRegistry,
  type Target,
  table,
  targetLine,
  timed,
} from "./lib.ts";
import type { Fixture } from "./seed.ts";
import { SMALL } from "./shape.ts";

/** Tools of the gateway's big role: the sdk baseline's /many/mcp lists this many (BASELINE_MANY_TOOLS). */
const GATEWAY_TOOLS = 500;
// The gateway's sequential rows and their direct baselines.
const SDK_CALL_SEQUENTIAL = "bare SDK tools/call, sequential";
const GATEWAY_CALL_SEQUENTIAL = "gateway tools/call echo, sequential";
const SDK_LIST_MANY = `bare SDK tools/list (${GATEWAY_TOOLS} tools, one answer)`;
const SDK_LIST_PAGED = `bare SDK tools/list (${GATEWAY_TOOLS} tools, pages of 100)`;
const GATEWAY_LIST_MANY = `gateway tools/list (${GATEWAY_TOOLS} tools)`;
const BARE_DISCOVERY = "bare SDK client connect + tools/list";
const ADD_SERVICE = "add_service (server-everything)";
/** Peak RSS targets of the small shape: Deno's runtime holds about 20 MB more outside V8's heap (docs/performance.md). */
const SMALL_RSS_LIMIT = DENO ? 170 : 150;

function parseSettings(): Settings & { out: string; database?: string } {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      out: { type: "string" },
      duration: { type: "string" },
      connections: { type: "string" },
      iterations: { type: "string" },
      calls: { type: "string" },
      database: { type: "string" },
      shape: { type: "string", default: "small" },
      "refresh-interval": { type: "string", default: "120" },
      "discovery-timeout": { type: "string", default: "5" },
      "refresh-due": { type: "string", default: "now" },
      "fixed-seconds": { type: "string" },
    },
  });
  const quick = values.quick ?? false;
  if (values.shape !== "small" && values.shape !== "large") throw new Error(`--shape must be small or large, not ${values.shape}`);
  if (values["refresh-due"] !== "spread" && values["refresh-due"] !== "now") throw new Error(`--refresh-due must be spread or now, not ${values["refresh-due"]}`);
  return {
    quick,
    shape: values.shape,
    duration: Number(values.duration ?? (quick ? 1.5 : 10)),
    // Quick is a smoke run: a short warm-up keeps the small shape under a minute on a busy 2-core machine.
    warmup: quick ? 0.25 : 2,
    connections: Number(values.connections ?? 50),
    iterations: Number(values.iterations ?? (quick ? 3 : 20)),
    calls: Number(values.calls ?? (quick ? 30 : 300)),
    refreshInterval: Number(values["refresh-interval"]),
    discoveryTimeout: Number(values["discovery-timeout"]),
    refreshDue: values["refresh-due"],
    fixedSeconds: Number(values["fixed-seconds"] ?? (quick ? 5 : 15)),
    out: values.out ?? process.env.BENCH_OUT ?? join(ROOT, "bench/results.json"),
    database: values.database,
  };
}

async function main(): Promise<void> {
  const settings = parseSettings();
  const runtime = DENO ? `deno ${process.versions.deno}` : `node ${process.versions.node}`;
  const stops: (() => Promise<void>)[] = [];
  let cleaning: Promise<void> | undefined;
  // Once, however often asked (the end of the run and a signal may both ask): everyone waits for the same.
  const cleanUp = () =>
    (cleaning ??= (async () => {
      for (const stop of stops.reverse()) await stop().catch((err) => log(`cleanup: ${(err as Error).message}`));
    })());
  // Interrupted (Ctrl-C, a test's timeout): the servers started so far are stopped, never left running.
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => void cleanUp().finally(() => process.exit(130)));
  const tmp = mkdtempSync(join(tmpdir(), "mcp-registry-bench-"));
  stops.push(async () => rmSync(tmp, { recursive: true, force: true }));
  try {
    // A fresh database per shape: a temporary one on the PostgreSQL server, or a file in the temporary directory.
    const newDatabase = async (name: string) => {
      const db = settings.database ? await temporaryPostgres(settings.database, `bench_${name}`) : { url: `file:${join(tmp, `${name}.db`)}`, drop: async () => {} };
      stops.push(db.drop);
      return db.url;
    };
    const engine = settings.database ? "postgres" : "sqlite";
    const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64");
    log(`${runtime}, ${engine}, ${settings.connections} connections, ${settings.duration} s per scenario${settings.quick ? " (quick)" : ""}, shape ${settings.shape}`);

    const start = startCommand();
    log(`runtime flags of the registry and the baselines (from ${DENO ? "deno.json" : "package.json"}): ${start.runtimeFlags.join(" ") || "none"}`);
    // One process per baseline: a process that has just served MCP loads carries their heap, which made the
    // bare Hono route measured after them up to twice as slow per request as in a fresh process.
    const hono = await startChild("baseline hono", ...scriptCommand(start.runtimeFlags, "bench/baseline.ts", "hono"), {}, /baseline listening on (\d+)/);
    stops.push(hono.stop);
    const sdk = await startChild(
      "baseline sdk",
      ...scriptCommand(start.runtimeFlags, "bench/baseline.ts", "sdk"),
      { BASELINE_MANY_TOOLS: String(GATEWAY_TOOLS) },
      /baseline listening on (\d+)/,
    );
    stops.push(sdk.stop);

    const small = await runSmall(settings, start.registry, secret, await newDatabase("small"), hono, sdk, stops);
    const large: LargeReport | null =
      settings.shape === "large"
        ? await runLarge({
            settings,
            command: start.registry,
            runtimeFlags: start.runtimeFlags,
            secret,
            newDatabase,
            hono,
            sdk,
            stops,
            small: small.scenarios,
            smallStartupMs: small.startupMs,
          })
        : null;
    const report = {
      runtime,
      engine,
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? "", platform: process.platform },
      settings: { ...settings, shapes: { small: SMALL, ...(large ? { large: large.shape } : {}) } },
      ...small,
      baselinePeakRssMb: { hono: peakRss(hono.pid), sdk: peakRss(sdk.pid) },
      ...(large ? { large } : {}),
    };
    console.log(formatReport(runtime, engine, small, report.baselinePeakRssMb));
    if (large) console.log(formatLarge(large));
    mkdirSync(dirname(resolve(settings.out)), { recursive: true });
    writeFileSync(settings.out, `${JSON.stringify(report, null, 2)}\n`);
    log(`results written to ${settings.out}`);
  } finally {
    await cleanUp();
  }
}

type SmallReport = {
  scenarios: ScenarioResult[];
  targets: Target[];
  peakRssMb: number | null;
  /** From spawning the registry to its "MCP Registry listening" line. */
  startupMs: number;
  seedMs: number;
  baselineDrift: Record<string, number> | null;
  registryErrors: number;
};

/** The small shape: seeded, served by a registry of its own (stopped at the end), every scenario paired with its baseline. */
async function runSmall(
  settings: Settings,
  command: [string, string[]],
  secret: string,
  url: string,
  hono: Child,
  sdk: Child,
  stops: (() => Promise<void>)[],
): Promise<SmallReport> {
  let started = performance.now();
  const fixture = await seedDatabase(url, secret, SMALL);
  const seedMs = Math.round(performance.now() - started);
  log(`seeded ${SMALL.services} services x ${SMALL.toolsPerService} tools, ${SMALL.roles} roles, ${SMALL.users} users with tokens in ${seedMs} ms`);
  const registry = await startRegistry("registry", command, registryEnv(url, secret));
  stops.push(registry.stop);
  log(`registry started in ${registry.startupMs} ms (spawn to "MCP Registry listening")`);
  const servers = { registry, hono, sdk };
  const baselines = baselineScenarios();
  const loads = smallScenarios(fixture);
  const measured = new Map<string, Measured[]>();
  started = performance.now();
  // Unrecorded: the load generator and the baselines settle first (a runtime's first seconds are slower).
  if (!settings.quick)
    for (const b of baselines) await measure(servers[b.server].url, b, { seconds: settings.warmup * 2, connections: settings.connections, pid: servers[b.server].pid });
  const paired = await runPaired(loads, baselines, servers, settings, measured);
  // The gateway's set-up comes after the scenarios above: its services and tools would change what they
  // read (/list_services lists every service). Its load scenarios are paired the same way.
  const setUp = performance.now();
  const gateway = await gatewaySetup(registry.url, sdk.url);
  log(
    `gateway set up through the admin tools (2 services on the bare SDK server, ${GATEWAY_TOOLS + 1} attachments, 2 users, a user key) in ${Math.round(performance.now() - setUp)} ms`,
  );
  const gatewayLoads = gatewayScenarios(gateway);
  for (const [name, run] of await runPaired(gatewayLoads, baselines, servers, settings, measured)) paired.set(name, run);

  const gatewayTimes = await gatewaySequential(registry, sdk, gateway, settings.calls);
  const sequential = await discoveryScenario(registry, settings.iterations);
  const peakRssMb = peakRss(registry.pid);
  log(`registry peak RSS after add_service/remove_service: ${peakRssMb} MB`);
  log(`scenarios done in ${Math.round((performance.now() - started) / 1000)} s`);
  const errors = registry
    .output()
    .split("\n")
    .filter((line) => / ERROR /.test(line));
  if (errors.length) log(`the registry logged ${errors.length} error(s) during the run, first: ${errors[0]}`);
  // The large shape's registry runs alone.
  await registry.stop();

  const rows = [
    ...baselines.map((b) => loadRow(b, measured.get(b.name)!, meanOf(measured.get(b.name)!))),
    ...[...loads, ...gatewayLoads].map((l) => loadRow(l, measured.get(l.name)!, paired.get(l.name)!)),
    ...sequentialRows(sequential, gatewayTimes),
  ];
  return {
    scenarios: rows,
    targets: checkTargets(rows, peakRssMb),
    peakRssMb,
    startupMs: registry.startupMs,
    seedMs,
    baselineDrift: baselineDrift(baselines, measured),
    registryErrors: errors.length,
  };
}

/** The small shape's load scenarios: /health, the agent endpoints (/tools_for_role on the role with 200 tools), MCP tools/list. */
function smallScenarios(f: Fixture): Load[] {
  return [
    {
      name: "GET /health",
      server: "registry",
      vs: HONO,
      method: "GET",
      headers: {},
      request: () => ({ path: "/health" }),
      check: (b) => ((b as { status?: string }).status === "healthy" ? null : "unexpected body"),
    },
    ...agentScenarios(
      f,
      f.roles.filter((r) => r.name === f.bigRole),
    ),
    {
      name: "MCP tools/list",
      server: "registry",
      vs: SDK_LIST,
      method: "POST",
      headers: { authorization: `Bearer ${AGENT}`, ...MCP_HEADERS },
      request: () => ({ path: "/mcp", body: rpc("tools/list") }),
      check: (b) => (result(b)?.tools?.some((t) => t.name === "get_tools") ? null : "get_tools not listed"),
    },
  ];
}

/** The gateway's load scenarios, once it is set up (gatewaySetup). */
function gatewayScenarios(g: Gateway): Load[] {
  return [
    {
      // The same call as the bare SDK tools/call, through the gateway to that very server, as a user with a user key.
      name: "gateway tools/call echo",
      server: "registry",
      downstream: "sdk",
      vs: SDK_CALL,
      method: "POST",
      headers: { authorization: `Bearer ${g.callKey}`, ...MCP_HEADERS },
      request: () => ({ path: "/gateway/mcp", body: rpc("tools/call", { name: g.echoTool, arguments: { text: "hello" } }) }),
      check: (b) => (result(b)?.content?.[0]?.text === "hello" && !result(b)!.isError ? null : `wrong gateway answer ${json(b).slice(0, 200)}`),
    },
  ];
}

const json = (body: unknown) => JSON.stringify(body);

/** Sequential calls of one kind: their times (ms), the CPU (s) each process of its own spent during them, its server's RSS after. */
type Series = { times: number[]; cpu: (number | null)[]; rssMb: number | null };
const series = (pids: number[]): Series => ({ times: [], cpu: pids.map(() => 0), rssMb: null });

type Sequential = { bare: Series; add: Series; remove: Series; tools: number };

// Uncounted rounds first: the registry runs the SDK client for the first time here, and its first
// discoveries are twice as slow until the JIT has compiled that code (measured: about ten rounds).
const WARM_UP_ROUNDS = 5;

// add_service + remove_service of server-everything through the registry, against a bare SDK client's
// connect + tools/list of the same server; interleaved, after uncounted warm-up rounds. CPU: the bare
// client's of server-everything, add_service's and remove_service's of the registry.
async function discoveryScenario(registry: Child, iterations: number): Promise<Sequential> {
  const port = await freePort();
  const node = DENO ? "node" : process.execPath;
  const everything = await startChild(
    "server-everything",
    node,
    [join(ROOT, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"), "streamableHttp"],
    { PORT: String(port) },
    new RegExp(`(${port})|listening|running`, "i"),
  );
  const endpoint = `http://127.0.0.1:${port}/mcp`;
  const admin = new Client({ name: "bench-admin", version: "1.0.0" });
  try {
    await admin.connect(new StreamableHTTPClientTransport(new URL(`${registry.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${ADMIN}` } } }));
    const out: Sequential = { bare: series([everything.pid]), add: series([registry.pid]), remove: series([registry.pid]), tools: 0 };
    const scratch = { bare: series([everything.pid]), add: series([registry.pid]), remove: series([registry.pid]) };
    for (let k = -WARM_UP_ROUNDS; k < iterations; k++) {
      const name = `everything-${k + WARM_UP_ROUNDS}`;
      // Warm-up rounds are timed into scratch series that are thrown away.
      const into = k < 0 ? scratch : out;
      into.bare.times.push(
        await timed(
          async () => {
            out.tools = await bareDiscovery(endpoint);
          },
          [everything.pid],
          into.bare.cpu,
        ),
      );
      into.add.times.push(
        await timed(
          async () => {
            const added = await admin.callTool({ name: "add_service", arguments: { service_name: name, endpoint, description: "Reference server" } });
            if (added.isError || !String((added.content as { text?: string }[])[0]?.text).includes(`added with ${out.tools} tools`))
              throw new Error(`add_service: ${JSON.stringify(added)}`);
          },
          [registry.pid],
          into.add.cpu,
        ),
      );
      into.remove.times.push(
        await timed(
          async () => {
            const removed = await admin.callTool({ name: "remove_service", arguments: { service_name: name } });
            if (removed.isError) throw new Error(`remove_service: ${JSON.stringify(removed)}`);
          },
          [registry.pid],
          into.remove.cpu,
        ),
      );
    }
    out.bare.rssMb = rss(everything.pid);
    out.add.rssMb = out.remove.rssMb = rss(registry.pid);
    log(
      `add_service ${mean(out.add.times).toFixed(1)} ms, remove_service ${mean(out.remove.times).toFixed(1)} ms, bare connect + tools/list ${mean(out.bare.times).toFixed(1)} ms (mean of ${iterations})`,
    );
    return out;
  } finally {
    await admin.close().catch(() => {});
    await everything.stop();
  }
}

// What a bare SDK client does to learn a server's tools: connect, every page of tools/list, close.
async function bareDiscovery(endpoint: string): Promise<number> {
  const client = new Client({ name: "bench-bare", version: "1.0.0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(endpoint)));
  try {
    let count = 0;
    let cursor: string | undefined;
    do {
      const page = await client.listTools(cursor ? { cursor } : {});
      count += page.tools.length;
      cursor = page.nextCursor;
    } while (cursor);
    return count;
  } finally {
    await client.close();
  }
}

/** Whom the gateway scenarios act for, and what they call. */
type Gateway = {
  /** The user key of the user whose role has the echo tool. */
  callKey: string;
  /** The echo tool's gateway name. */
  echoTool: string;
  /** The user whose role has the 500 tools (reached with the agent key and X-Registry-User). */
  listUser: string;
};

// The gateway set up as an operator does it, through the registry's admin tools: the bare SDK baseline
// server registered as two services (its /mcp with the echo tool, its /many/mcp with GATEWAY_TOOLS tools,
// discovered by add_service), a role on each, a user with each role, and a user key for the first.
async function gatewaySetup(registryUrl: string, sdkUrl: string): Promise<Gateway> {
  const admin = new Client({ name: "bench-admin", version: "1.0.0" });
  await admin.connect(new StreamableHTTPClientTransport(new URL(`${registryUrl}/mcp`), { requestInit: { headers: { authorization: `Bearer ${ADMIN}` } } }));
  try {
    const call = async (name: string, args: Record<string, unknown>) => {
      const r = await admin.callTool({ name, arguments: args });
      if (r.isError) throw new Error(`gateway set-up, ${name}: ${JSON.stringify(r.content).slice(0, 300)}`);
      return r;
    };
    const toolsOf = async (service: string) => ((await call("get_tools", { service_name: service })).structuredContent as { tools: { id: number; name: string }[] }).tools;
    await call("add_service", { service_name: "bench-echo", endpoint: `${sdkUrl}/mcp`, description: "The bare SDK baseline server: one echo tool." });
    await call("add_service", { service_name: "bench-many", endpoint: `${sdkUrl}/many/mcp`, description: `The bare SDK baseline server listing ${GATEWAY_TOOLS} tools.` });
    await call("create_role", { role_name: "gateway-echo" });
    await call("create_role", { role_name: `gateway-${GATEWAY_TOOLS}` });
    const echo = (await toolsOf("bench-echo")).find((t) => t.name === "echo");
    if (!echo) throw new Error("gateway set-up: bench-echo has no echo tool");
    await call("attach_role_to_tool", { tool_id: echo.id, role_name: "gateway-echo" });
    const many = await toolsOf("bench-many");
    if (many.length !== GATEWAY_TOOLS) throw new Error(`gateway set-up: bench-many has ${many.length} tools, not ${GATEWAY_TOOLS}`);
    // Some at a time: concurrent writes share the registry's commits (25 at once: half the time of 10).
    for (let i = 0; i < many.length; i += 25)
      await Promise.all(many.slice(i, i + 25).map((t) => call("attach_role_to_tool", { tool_id: t.id, role_name: `gateway-${GATEWAY_TOOLS}` })));
    await call("assign_role_to_user", { user_id: "gateway-caller", role_name: "gateway-echo" });
    await call("assign_role_to_user", { user_id: "gateway-lister", role_name: `gateway-${GATEWAY_TOOLS}` });
    const key = ((await call("create_user_key", { user_id: "gateway-caller", label: "bench" })).structuredContent as { key?: unknown } | undefined)?.key;
    if (typeof key !== "string") throw new Error("gateway set-up: create_user_key returned no key");
    return { callKey: key, echoTool: "bench-echo__echo", listUser: "gateway-lister" };
  } finally {
    await admin.close().catch(() => {});
  }
}

type GatewayTimes = { direct: Series; gateway: Series; directList: Series; directPaged: Series; gatewayList: Series; pages: number };

// The calls in turn, the first of each round rotating, `calls` rounds after uncounted warm-up rounds: each one's series.
async function interleaved(calls: number, kinds: { run: () => Promise<void>; pids: number[] }[]): Promise<Series[]> {
  const out = kinds.map((k) => series(k.pids));
  const scratch = kinds.map((k) => series(k.pids));
  for (let k = -Math.min(50, calls); k < calls; k++) {
    for (let n = 0; n < kinds.length; n++) {
      const which = (n + Math.abs(k)) % kinds.length;
      const into = k < 0 ? scratch[which] : out[which];
      into.times.push(await timed(kinds[which].run, kinds[which].pids, into.cpu));
    }
  }
  kinds.forEach((kind, n) => {
    out[n].rssMb = rss(kind.pids[0]);
  });
  return out;
}

// The gateway's latency, one request at a time: the same tools/call straight to the bare SDK server and
// through the gateway, interleaved, `calls` of each after uncounted warm-up calls; then the 500 tools listed
// through the gateway (every page of 100, following nextCursor) against the same tools listed straight from
// the service in the same pages of 100 (the fair comparison: same tools, same round trips, the registry's
// cost per page) and in one answer (what one round trip would cost: reported). Plain fetch, as the probes send requests.
async function gatewaySequential(registry: Child, sdk: Child, g: Gateway, calls: number): Promise<GatewayTimes> {
  type Answer = { content?: { text?: string }[]; tools?: unknown[]; nextCursor?: string; isError?: boolean } | undefined;
  const post = async (url: string, headers: Record<string, string>, method: string, params?: unknown): Promise<Answer> => {
    const res = await fetch(url, { method: "POST", headers, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, ...(params ? { params } : {}) }) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${url}: status ${res.status}: ${text.slice(0, 200)}`);
    return (JSON.parse(text) as { result?: Answer }).result;
  };
  const echo = async (url: string, headers: Record<string, string>, name: string) => {
    const r = await post(url, headers, "tools/call", { name, arguments: { text: "hello" } });
    if (r?.content?.[0]?.text !== "hello" || r.isError) throw new Error(`${url}: wrong tools/call answer ${JSON.stringify(r).slice(0, 200)}`);
  };
  const [direct, gateway] = await interleaved(calls, [
    { run: () => echo(`${sdk.url}/mcp`, MCP_HEADERS, "echo"), pids: [sdk.pid] },
    { run: () => echo(`${registry.url}/gateway/mcp`, { ...MCP_HEADERS, authorization: `Bearer ${g.callKey}` }, g.echoTool), pids: [registry.pid, sdk.pid] },
  ]);

  // Every page of a listing, following nextCursor: the number of pages.
  const listAll = async (what: string, url: string, headers: Record<string, string>) => {
    let count = 0;
    let pages = 0;
    let cursor: string | undefined;
    for (; pages === 0 || cursor; pages++) {
      const r = await post(url, headers, "tools/list", cursor ? { cursor } : undefined);
      count += r?.tools?.length ?? 0;
      cursor = r?.nextCursor;
    }
    if (count !== GATEWAY_TOOLS) throw new Error(`${what}: ${count} tools, not ${GATEWAY_TOOLS}`);
    return pages;
  };
  const pages = { direct: 0, paged: 0, gateway: 0 };
  const lister = { ...MCP_HEADERS, authorization: `Bearer ${AGENT}`, "x-registry-user": g.listUser };
  // Each listing records how many pages it took.
  const listing = (which: keyof typeof pages, url: string, headers: Record<string, string>) => async () => {
    pages[which] = await listAll(`${which} tools/list`, url, headers);
  };
  const [directList, directPaged, gatewayList] = await interleaved(calls, [
    { run: listing("direct", `${sdk.url}/many/mcp`, MCP_HEADERS), pids: [sdk.pid] },
    { run: listing("paged", `${sdk.url}/many/paged/mcp`, MCP_HEADERS), pids: [sdk.pid] },
    { run: listing("gateway", `${registry.url}/gateway/mcp`, lister), pids: [registry.pid] },
  ]);
  if (pages.paged !== pages.gateway) log(`the gateway listed ${pages.gateway} pages, the paged baseline ${pages.paged}: the comparison is not like for like`);
  const ms = (s: Series) => median(s.times).toFixed(2);
  log(
    `gateway, sequential (median of ${calls}): tools/call ${ms(gateway)} ms, direct ${ms(direct)} ms; tools/list of ${GATEWAY_TOOLS} tools ${ms(gatewayList)} ms ` +
      `(${pages.gateway} pages), direct ${ms(directPaged)} ms (${pages.paged} pages), ${ms(directList)} ms (one answer)`,
  );
  return { direct, gateway, directList, directPaged, gatewayList, pages: pages.gateway };
}

// A sequential row: mean or median time over its baseline's (lower is better), CPU per call of its own process(es).
function sequentialRow(name: string, s: Series, vs: string, base: Series, ratioOf: "mean" | "median"): ScenarioResult {
  const sorted = [...s.times].sort((a, b) => a - b);
  const stat = ratioOf === "mean" ? mean : median;
  const us = (k: number) => (s.cpu[k] == null ? null : Math.round((s.cpu[k]! * 1e6) / s.times.length));
  return {
    name,
    kind: "sequential",
    vs,
    ratioOf,
    reqPerSec: 1000 / mean(s.times),
    meanMs: mean(s.times),
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    ratio: stat(s.times) / stat(base.times),
    requests: s.times.length,
    cpuUsPerReq: us(0),
    ...(s.cpu.length > 1 ? { downstreamCpuUsPerReq: us(1) } : {}),
    rssMb: s.rssMb,
  };
}

function sequentialRows(seq: Sequential, gw: GatewayTimes): ScenarioResult[] {
  return [
    sequentialRow(BARE_DISCOVERY, seq.bare, BARE_DISCOVERY, seq.bare, "mean"),
    sequentialRow(ADD_SERVICE, seq.add, BARE_DISCOVERY, seq.bare, "mean"),
    sequentialRow("remove_service", seq.remove, BARE_DISCOVERY, seq.bare, "mean"),
    // The gateway's sequential rows: median times against their direct baseline's median.
    sequentialRow(SDK_CALL_SEQUENTIAL, gw.direct, SDK_CALL_SEQUENTIAL, gw.direct, "median"),
    sequentialRow(GATEWAY_CALL_SEQUENTIAL, gw.gateway, SDK_CALL_SEQUENTIAL, gw.direct, "median"),
    sequentialRow(SDK_LIST_MANY, gw.directList, SDK_LIST_MANY, gw.directList, "median"),
    sequentialRow(SDK_LIST_PAGED, gw.directPaged, SDK_LIST_PAGED, gw.directPaged, "median"),
    sequentialRow(GATEWAY_LIST_MANY, gw.gatewayList, SDK_LIST_PAGED, gw.directPaged, "median"),
  ];
}

function checkTargets(rows: ScenarioResult[], peakRssMb: number | null): Target[] {
  const row = (name: string) => rows.find((r) => r.name === name)!;
  const min = (scenario: string, want: number): Target => ({
    name: `${scenario} >= ${want} x ${row(scenario).vs}`,
    scenario,
    want: `>= ${want}`,
    value: row(scenario).ratio,
    pass: row(scenario).ratio >= want,
  });
  const max = (scenario: string, want: number, name: string): Target => ({ name, scenario, want: `<= ${want}`, value: row(scenario).ratio, pass: row(scenario).ratio <= want });
  // Listings per second over the paged baseline's: the inverse of the row's time ratio.
  const listRate = 1 / row(GATEWAY_LIST_MANY).ratio;
  return [
    min("GET /token", 0.4),
    min("POST /role_for_user", 0.45),
    min("POST /system_prompt_for_role", 0.45),
    min("POST /tools_for_role", 0.3),
    min("GET /list_services", 0.3),
    min("MCP tools/call get_tools", 0.7),
    min("gateway tools/call echo", 0.5),
    max(GATEWAY_CALL_SEQUENTIAL, 2, `${GATEWAY_CALL_SEQUENTIAL}: median <= 2 x ${SDK_CALL_SEQUENTIAL}`),
    {
      name: `${GATEWAY_LIST_MANY}: listings/s >= 0.3 x ${SDK_LIST_PAGED} (median times, inverse of the row's ratio)`,
      scenario: GATEWAY_LIST_MANY,
      want: ">= 0.3",
      value: listRate,
      pass: listRate >= 0.3,
    },
    max(ADD_SERVICE, 1.5, `add_service <= 1.5 x ${BARE_DISCOVERY}`),
    {
      name: `peak RSS of the registry < ${SMALL_RSS_LIMIT} MB (${DENO ? "Deno" : "Node"})`,
      scenario: "peak RSS",
      want: `< ${SMALL_RSS_LIMIT}`,
      value: peakRssMb,
      pass: peakRssMb !== null && peakRssMb < SMALL_RSS_LIMIT,
    },
  ];
}

// How far each baseline's runs spread over the benchmark ((max - min) / mean): how much the machine
// drifted, which the paired ratios avoid but the baseline rows (means of the runs) carry.
function baselineDrift(baselines: Load[], measured: Map<string, Measured[]>): Record<string, number> | null {
  const out: Record<string, number> = {};
  for (const b of baselines) {
    const runs = (measured.get(b.name) ?? []).map((r) => r.reqPerSec);
    if (runs.length >= 2) out[b.name] = Math.round(((Math.max(...runs) - Math.min(...runs)) / mean(runs)) * 100);
  }
  return Object.keys(out).length ? out : null;
}

function formatReport(runtime: string, engine: string, small: SmallReport, baselineRss: { hono: number | null; sdk: number | null }): string {
  const rows = small.scenarios;
  const head = ["scenario", "req/s", "p50 ms", "p99 ms", "ratio", "CPU µs/req", "CPU ratio", "server CPU", "load gen CPU", "other CPU", "RSS MB", "vs"];
  // Sequential times of a few ms (the gateway's) get two decimals.
  const ms = (x: number) => x.toFixed(x < 10 ? 2 : 1);
  const body = rows.map((r) => [
    r.name,
    r.kind === "load" ? String(Math.round(r.reqPerSec)) : `${ms(r.meanMs!)} ms`,
    r.kind === "load" ? r.p50Ms.toFixed(0) : ms(r.p50Ms),
    r.kind === "load" ? r.p99Ms.toFixed(0) : ms(r.p99Ms),
    r.ratio.toFixed(2),
    r.cpuUsPerReq == null ? "" : r.downstreamCpuUsPerReq == null ? String(r.cpuUsPerReq) : `${r.cpuUsPerReq}+${r.downstreamCpuUsPerReq}`,
    r.cpuRatio == null ? "" : r.cpuRatio.toFixed(2),
    r.serverCpu == null ? "" : `${r.serverCpu}%`,
    r.generatorCpu == null ? "" : `${r.generatorCpu}%`,
    r.otherCpu == null ? "" : `${r.otherCpu}%`,
    r.rssMb == null ? "" : String(r.rssMb),
    r.name === r.vs ? "(baseline)" : r.vs,
  ]);
  const drift = small.baselineDrift;
  const noisy = drift && Object.values(drift).some((d) => d > 10);
  const saturated = rows.filter((r) => (r.generatorCpu ?? 0) >= 90).map((r) => r.name);
  const disturbed = rows.filter((r) => (r.otherCpu ?? 0) >= 20).map((r) => r.name);
  const list = rows.find((r) => r.name === GATEWAY_LIST_MANY)!;
  const oneAnswer = rows.find((r) => r.name === SDK_LIST_MANY)!;
  return [
    "",
    `${runtime}, ${engine}, small shape. ratio: req/s over the baseline's (sequential rows: time over the baseline's, lower is better: mean times,`,
    "the gateway's median times). CPU ratio: the baseline's server CPU per request over this one's (a gateway row: over the",
    "registry's + the downstream service's, shown as CPU µs/req registry+downstream). RSS MB: the serving process's VmRSS right",
    "after the scenario. Targets are judged on ratio.",
    ...table(head, body),
    saturated.length ? `The load generator was saturated (>= 90% CPU) in: ${saturated.join(", ")}: req/s there is a lower bound of the server's.` : null,
    engine === "postgres" ? "other CPU includes the PostgreSQL server's work for these requests." : null,
    disturbed.length && engine !== "postgres" ? `Other processes used >= 20% of a core during: ${disturbed.join(", ")}: noisy, repeat the run on a quiet machine.` : null,
    stealNote(rows),
    `registry start-up (spawn to "MCP Registry listening"): ${small.startupMs} ms; seeding: ${small.seedMs} ms`,
    "",
    ...small.targets.map(targetLine),
    `INFO  ${GATEWAY_LIST_MANY}, every page: ${ms(list.p50Ms)} ms median, ${(list.p50Ms / oneAnswer.p50Ms).toFixed(2)} x ${SDK_LIST_MANY} (${ms(oneAnswer.p50Ms)} ms): what one round trip instead of five would save`,
    small.peakRssMb === null
      ? "peak RSS: not measured (needs /proc)"
      : `peak RSS of the registry process: ${small.peakRssMb} MB (of the baselines' processes, under their loads: bare Hono ${baselineRss.hono} MB, bare SDK ${baselineRss.sdk} MB)`,
    drift
      ? `spread of the baselines' runs over the benchmark: ${Object.entries(drift)
          .map(([k, v]) => `${k} ${v}%`)
          .join(", ")}${noisy ? " — the machine drifted; each ratio is taken against the baseline run just before its scenario" : ""}`
      : null,
  ]
    .filter((line) => line !== null)
    .join("\n");
}

await main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench failed: ${(err as Error).message}`);
    process.exit(1);
  },
);
