/**
 * `npm run bench` / `deno task bench`: the registry under load, against baselines measured in the same run.
 *
 * The registry and the baselines each run in their own process, on the runtime running this script
 * (Node or Deno; the registry as `npm start` or `deno task start` runs it, the baselines with the same
 * runtime flags), served by @hono/node-server; autocannon drives them from this process, on 127.0.0.1
 * only, with bounded connections and duration. Prints a table with PASS/MISS per target and
 * writes the results as JSON. Options: --quick, --out <file> (or BENCH_OUT), --duration <s>,
 * --connections <n>, --iterations <n>, --calls <n>, --database <postgres://...> (a temporary database on that server).
 *
 * The gateway (POST /gateway/mcp) is measured against the bare SDK baseline it forwards to: that server is
 * registered as two services (its /mcp with the echo tool, its /many/mcp with 500 tools), each on a role of
 * a bench user, through the registry's admin tools; then the same tools/call goes through the gateway and
 * straight to the server, under load and sequentially (median of --calls calls each, interleaved).
 */
import { Buffer } from "node:buffer";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import autocannon from "autocannon";
import { openContext } from "../registry.ts";
import { loadConfig } from "../shared/config.ts";
import { temporaryPostgres } from "../shared/db/temporary.ts";
import { createLog } from "../shared/log.ts";
import { type Fixture, seed, SHAPE } from "./seed.ts";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DENO = Boolean(process.versions.deno);
const DENO_FLAGS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-ffi", "--allow-sys"];
const ADMIN = "bench-admin-key-0123456789abcdef";
const AGENT = "bench-agent-key-0123456789abcdef";
const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18" };
/** Tools of the gateway's big role: the sdk baseline's /many/mcp lists this many (BASELINE_MANY_TOOLS). */
const GATEWAY_TOOLS = 500;
// The gateway's sequential rows and their direct baselines.
const SDK_CALL_SEQUENTIAL = "bare SDK tools/call, sequential";
const GATEWAY_CALL_SEQUENTIAL = "gateway tools/call echo, sequential";
const SDK_LIST_MANY = `bare SDK tools/list (${GATEWAY_TOOLS} tools)`;
const GATEWAY_LIST_MANY = `gateway tools/list (${GATEWAY_TOOLS} tools)`;

/** One row of the results: a load scenario (req/s, latency) or a sequential one (mean time per iteration). */
export type ScenarioResult = {
  name: string;
  kind: "load" | "sequential";
  /** The scenario this one's ratio is taken against (itself for a baseline). */
  vs: string;
  /** sequential: the statistic the ratio compares (mean times, or median times for the gateway's rows). */
  ratioOf?: "mean" | "median";
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** load: req/s over the baseline's req/s (higher is better); sequential: mean time over the baseline's (lower is better). */
  ratio: number;
  meanMs?: number;
  requests?: number;
  /** CPU time of the server process during the run, in % of one core; and of the load generator (this process). */
  serverCpu?: number | null;
  /** Server CPU time per request, in microseconds. */
  cpuUsPerReq?: number | null;
  /** The baseline's server CPU per request over this one's: the ratio a saturated load generator cannot blur.
   * For a gateway scenario, over the registry's and the downstream service's CPU per request together. */
  cpuRatio?: number | null;
  /** A gateway scenario: CPU of the downstream service's process (the sdk baseline), in % of one core and per request. */
  downstreamCpu?: number | null;
  downstreamCpuUsPerReq?: number | null;
  /** CPU used meanwhile by the rest of the machine (other processes), in % of one core: the run's noise. */
  otherCpu?: number | null;
  /** req/s of each run, when the scenario ran more than once (the baselines, before and after the rest). */
  runs?: number[];
  generatorCpu?: number;
};

type Target = { name: string; scenario: string; want: string; value: number | null; pass: boolean };

type Load = {
  name: string;
  /** The process serving it: the registry, or the baseline process of its kind (each kind has its own). */
  server: "registry" | "hono" | "sdk";
  /** A gateway scenario: the process of the service the registry forwards to (its CPU is not "other CPU"). */
  downstream?: "sdk";
  vs: string;
  method: "GET" | "POST";
  headers: Record<string, string>;
  /** The i-th request (cycled by the caller): path and body. */
  request(i: number): { path: string; body?: string };
  /** null when the answer to request i is right, else what is wrong with it. */
  check(body: unknown, i: number): string | null;
};

type Settings = { quick: boolean; duration: number; warmup: number; connections: number; iterations: number; calls: number };

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      quick: { type: "boolean", default: false },
      out: { type: "string" },
      duration: { type: "string" },
      connections: { type: "string" },
      iterations: { type: "string" },
      calls: { type: "string" },
      database: { type: "string" },
    },
  });
  const quick = values.quick ?? false;
  const settings: Settings = {
    quick,
    duration: Number(values.duration ?? (quick ? 1.5 : 10)),
    warmup: quick ? 0.5 : 2,
    connections: Number(values.connections ?? 50),
    iterations: Number(values.iterations ?? (quick ? 3 : 20)),
    calls: Number(values.calls ?? (quick ? 30 : 300)),
  };
  const out = values.out ?? process.env.BENCH_OUT ?? join(ROOT, "bench/results.json");
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
    const database = values.database ? await temporaryPostgres(values.database, "bench") : { url: `file:${join(tmp, "bench.db")}`, drop: async () => {} };
    stops.push(database.drop);
    const engine = database.url.startsWith("file:") ? "sqlite" : "postgres";
    const secret = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString("base64");
    log(`${runtime}, ${engine}, ${settings.connections} connections, ${settings.duration} s per scenario${quick ? " (quick)" : ""}`);

    let started = performance.now();
    const fixture = await seedDatabase(database.url, secret);
    log(
      `seeded ${SHAPE.services} services x ${SHAPE.toolsPerService} tools, ${SHAPE.roles} roles, ${SHAPE.users} users with tokens in ${Math.round(performance.now() - started)} ms`,
    );

    const start = startCommand();
    log(`runtime flags of the registry and the baselines (from ${DENO ? "deno.json" : "package.json"}): ${start.runtimeFlags.join(" ") || "none"}`);
    const registry = await startChild(
      "registry",
      ...start.registry,
      {
        DATABASE_URL: database.url,
        REGISTRY_SECRET: secret,
        REGISTRY_SECRET_PREVIOUS: "",
        REGISTRY_ADMIN_KEYS: ADMIN,
        REGISTRY_AGENT_KEYS: AGENT,
        REGISTRY_AUTH: "on",
        MCP_HOST: "127.0.0.1",
        MCP_PORT: "0",
        AGENT_REREAD_HOOK: "",
        REGISTRY_DISCOVERY_TIMEOUT: "",
        // The seeded services do not exist: background refresh would only measure their failures.
        REGISTRY_REFRESH_INTERVAL: "0",
      },
      /MCP Registry listening: MCP endpoint http:\/\/127\.0\.0\.1:(\d+)\/mcp/,
    );
    stops.push(registry.stop);
    // One process per baseline: a process that has just served MCP loads carries their heap, which made the
    // bare Hono route measured after them up to twice as slow per request as in a fresh process.
    const hono = await startChild("baseline hono", ...baselineCommand(start.runtimeFlags, "hono"), {}, /baseline listening on (\d+)/);
    stops.push(hono.stop);
    const sdk = await startChild("baseline sdk", ...baselineCommand(start.runtimeFlags, "sdk"), { BASELINE_MANY_TOOLS: String(GATEWAY_TOOLS) }, /baseline listening on (\d+)/);
    stops.push(sdk.stop);
    const servers = { registry, hono, sdk };

    started = performance.now();
    const gateway = await gatewaySetup(registry.url, sdk.url);
    log(`gateway set up through the admin tools (2 services on the bare SDK server, ${GATEWAY_TOOLS + 1} attachments, 2 users, a user key) in ${Math.round(performance.now() - started)} ms`);

    const loads = scenarios(fixture, gateway);
    const baselines = loads.filter((l) => l.server !== "registry");
    const measured = new Map<string, Measured[]>();
    const run = async (load: Load) => {
      const server = servers[load.server];
      await probe(server.url, load);
      const downstream = load.downstream && servers[load.downstream].pid;
      await measure(server.url, load, settings.warmup, settings.connections, server.pid, downstream);
      const m = await measure(server.url, load, settings.duration, settings.connections, server.pid, downstream);
      measured.set(load.name, [...(measured.get(load.name) ?? []), m]);
      // The registry's peak RSS so far: which scenario drives it.
      const rss = load.server === "registry" ? `, registry peak RSS so far ${peakRss(server.pid)} MB` : "";
      const down = m.downstreamUsPerReq == null ? "" : `, CPU µs/req registry ${m.cpuUsPerReq} + downstream ${m.downstreamUsPerReq}`;
      log(`${load.name}: ${Math.round(m.reqPerSec)} req/s, p50 ${m.p50Ms} ms, p99 ${m.p99Ms} ms${down}${rss}`);
      return m;
    };
    started = performance.now();
    // Unrecorded: the load generator and the baselines settle first (a runtime's first seconds are slower).
    if (!quick) for (const load of baselines) await measure(servers[load.server].url, load, settings.warmup * 2, settings.connections, servers[load.server].pid);
    // Each scenario runs right after a run of its baseline, and its ratio is taken against that run: this
    // VM's speed drifts by up to 70% over a benchmark, and adjacent runs share the same conditions.
    const paired = new Map<string, Measured>();
    for (const load of loads.filter((l) => l.server === "registry")) {
      paired.set(load.name, await run(loads.find((l) => l.name === load.vs)!));
      await run(load);
    }

    const gatewayTimes = await gatewaySequential(registry.url, sdk.url, gateway, settings.calls);
    const sequential = await discoveryScenario(registry.url, settings.iterations);
    log(`registry peak RSS after add_service/remove_service: ${peakRss(registry.pid)} MB`);
    const peakRssMb = peakRss(registry.pid);
    const baselineRssMb = { hono: peakRss(hono.pid), sdk: peakRss(sdk.pid) };
    log(`scenarios done in ${Math.round((performance.now() - started) / 1000)} s`);
    const errors = registry
      .output()
      .split("\n")
      .filter((line) => / ERROR /.test(line));
    if (errors.length) log(`the registry logged ${errors.length} error(s) during the run, first: ${errors[0]}`);

    const results = summarize(loads, measured, paired, sequential, gatewayTimes);
    const targets = checkTargets(results, peakRssMb);
    const drift = baselineDrift(baselines, measured);
    const report = {
      runtime,
      engine,
      date: new Date().toISOString(),
      machine: { cpus: cpus().length, model: cpus()[0]?.model ?? "", platform: process.platform },
      settings: { ...settings, shape: SHAPE },
      scenarios: results,
      peakRssMb,
      baselinePeakRssMb: baselineRssMb,
      baselineDrift: drift,
      registryErrors: errors.length,
      targets,
    };
    console.log(formatReport(report.runtime, engine, results, targets, { registry: peakRssMb, ...baselineRssMb }, drift));
    mkdirSync(dirname(resolve(out)), { recursive: true });
    writeFileSync(out, `${JSON.stringify(report, null, 2)}\n`);
    log(`results written to ${out}`);
  } finally {
    await cleanUp();
  }
}

/** The load scenarios: baselines first, then the registry's paths with the baseline each is compared with. */
function scenarios(f: Fixture, g: Gateway): Load[] {
  const agent = { authorization: `Bearer ${AGENT}` };
  const json = (body: unknown) => JSON.stringify(body);
  const rpc = (method: string, params?: unknown) => json({ jsonrpc: "2.0", id: 1, method, ...(params ? { params } : {}) });
  const result = (body: unknown) =>
    (body as { result?: { structuredContent?: Record<string, unknown>; tools?: { name: string }[]; content?: { text?: string }[]; isError?: boolean } }).result;
  const HONO = "bare Hono JSON route";
  const SDK_CALL = "bare SDK tools/call";
  const SDK_LIST = "bare SDK tools/list";
  return [
    {
      name: HONO,
      server: "hono",
      vs: HONO,
      method: "GET",
      headers: {},
      request: () => ({ path: "/json" }),
      check: (b) => ((b as { status?: string }).status === "healthy" ? null : "unexpected body"),
    },
    {
      name: SDK_CALL,
      server: "sdk",
      vs: SDK_CALL,
      method: "POST",
      headers: MCP_HEADERS,
      request: () => ({ path: "/mcp", body: rpc("tools/call", { name: "echo", arguments: { text: "hello" } }) }),
      check: (b) => (result(b)?.content?.[0]?.text === "hello" && !result(b)!.isError ? null : "no tool result"),
    },
    {
      name: SDK_LIST,
      server: "sdk",
      vs: SDK_LIST,
      method: "POST",
      headers: MCP_HEADERS,
      request: () => ({ path: "/mcp", body: rpc("tools/list") }),
      check: (b) => (result(b)?.tools?.length === 1 ? null : "no tool list"),
    },
    {
      name: "GET /health",
      server: "registry",
      vs: HONO,
      method: "GET",
      headers: {},
      request: () => ({ path: "/health" }),
      check: (b) => ((b as { status?: string }).status === "healthy" ? null : "unexpected body"),
    },
    {
      name: "GET /token",
      server: "registry",
      vs: HONO,
      method: "GET",
      headers: agent,
      // A different user (and service) each request, query string form, as agents ask before each call.
      request: (i) => {
        const t = f.tokens[i % f.tokens.length];
        return { path: `/token?${new URLSearchParams({ service_name: t.service, user_id: t.user })}` };
      },
      check: (b, i) => {
        const t = f.tokens[i % f.tokens.length];
        const a = b as { token?: string; method_authorization?: string };
        return a.token === t.token && a.method_authorization === t.method ? null : `wrong token answer ${json(b)}`;
      },
    },
    {
      name: "POST /role_for_user",
      server: "registry",
      vs: HONO,
      method: "POST",
      headers: { ...agent, "content-type": "application/json" },
      request: (i) => ({ path: "/role_for_user", body: json({ user_id: f.users[i % f.users.length].user }) }),
      check: (b, i) => ((b as { role?: string }).role === f.users[i % f.users.length].role ? null : `wrong role ${json(b)}`),
    },
    {
      name: "POST /tools_for_role",
      server: "registry",
      vs: HONO,
      method: "POST",
      headers: { ...agent, "content-type": "application/json" },
      request: () => ({ path: "/tools_for_role", body: json({ role: f.bigRole }) }),
      check: (b) => ((b as { tools?: unknown[] }).tools?.length === SHAPE.bigRoleTools ? null : "wrong number of tools"),
    },
    {
      name: "GET /list_services",
      server: "registry",
      vs: HONO,
      method: "GET",
      headers: agent,
      request: () => ({ path: "/list_services" }),
      check: (b) => (Object.keys((b as { services?: object }).services ?? {}).length === SHAPE.services ? null : "wrong number of services"),
    },
    {
      name: "MCP tools/call get_tools",
      server: "registry",
      vs: SDK_CALL,
      method: "POST",
      headers: { ...agent, ...MCP_HEADERS },
      request: (i) => ({ path: "/mcp", body: rpc("tools/call", { name: "get_tools", arguments: { service_name: f.services[i % f.services.length] } }) }),
      check: (b) => ((result(b)?.structuredContent?.tools as unknown[] | undefined)?.length === SHAPE.toolsPerService ? null : `wrong get_tools answer ${json(b).slice(0, 200)}`),
    },
    {
      name: "MCP tools/list",
      server: "registry",
      vs: SDK_LIST,
      method: "POST",
      headers: { ...agent, ...MCP_HEADERS },
      request: () => ({ path: "/mcp", body: rpc("tools/list") }),
      check: (b) => (result(b)?.tools?.some((t) => t.name === "get_tools") ? null : "get_tools not listed"),
    },
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

// A wrong answer measured fast is no result: check the first request and one further along before loading.
async function probe(url: string, load: Load): Promise<void> {
  for (const i of [0, 37]) {
    const { path, body } = load.request(i);
    const res = await fetch(url + path, { method: load.method, headers: load.headers, body });
    const text = await res.text();
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* reported below */
    }
    const problem = res.status !== 200 ? `status ${res.status}: ${text.slice(0, 200)}` : load.check(parsed, i);
    if (problem) throw new Error(`${load.name}: ${problem}`);
  }
}

type Measured = {
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  serverCpu: number | null;
  cpuUsPerReq: number | null;
  generatorCpu: number;
  otherCpu: number | null;
  /** A gateway scenario: the downstream service's process, as serverCpu and cpuUsPerReq are the registry's. */
  downstreamCpu?: number | null;
  downstreamUsPerReq?: number | null;
};

async function measure(url: string, load: Load, seconds: number, connections: number, pid: number, downstreamPid?: number): Promise<Measured> {
  let i = 0;
  const first = load.request(0);
  const down0 = downstreamPid === undefined ? null : cpuSeconds(downstreamPid);
  const cpu0 = cpuSeconds(pid);
  const all0 = machineCpuSeconds();
  const gen0 = process.cpuUsage();
  const t0 = performance.now();
  const r = await autocannon({
    url: url + first.path,
    connections,
    duration: seconds,
    timeout: 10,
    // Samples every 250 ms: the run ends on a sample, so a 1.5 s run is not stretched to 2 s.
    sampleInt: 250,
    method: load.method,
    headers: load.headers,
    requests: [{ setupRequest: (req) => ({ ...req, ...load.request(i++) }) }],
  });
  const wall = (performance.now() - t0) / 1000;
  const cpu1 = cpuSeconds(pid);
  const down1 = downstreamPid === undefined ? null : cpuSeconds(downstreamPid);
  const all1 = machineCpuSeconds();
  const gen = process.cpuUsage(gen0);
  const genSeconds = (gen.user + gen.system) / 1e6;
  // The downstream service's work for these requests is part of the scenario, not the machine's noise.
  const down = down0 === null || down1 === null ? null : down1 - down0;
  if (r.errors || r.timeouts || r.non2xx) throw new Error(`${load.name}: ${r.errors} errors, ${r.timeouts} timeouts, ${r.non2xx} non-2xx answers under load`);
  return {
    // Total over elapsed time: exact, where the per-second average of a short run has few samples.
    reqPerSec: r.requests.total / r.duration,
    p50Ms: r.latency.p50,
    p99Ms: r.latency.p99,
    requests: r.requests.total,
    serverCpu: cpu0 === null || cpu1 === null ? null : Math.round(((cpu1 - cpu0) / wall) * 100),
    // What a request costs the server, whatever else runs on the machine (the load generator included).
    cpuUsPerReq: cpu0 === null || cpu1 === null ? null : Math.round(((cpu1 - cpu0) * 1e6) / r.requests.total),
    generatorCpu: Math.round((genSeconds / wall) * 100),
    // Everything else the machine ran meanwhile (other processes): the noise in this run.
    otherCpu:
      cpu0 === null || cpu1 === null || all0 === null || all1 === null ? null : Math.max(0, Math.round(((all1 - all0 - (cpu1 - cpu0) - (down ?? 0) - genSeconds) / wall) * 100)),
    ...(downstreamPid === undefined ? {} : { downstreamCpu: down === null ? null : Math.round((down / wall) * 100), downstreamUsPerReq: down === null ? null : Math.round((down * 1e6) / r.requests.total) }),
  };
}

type Sequential = { bare: number[]; add: number[]; remove: number[]; tools: number };

// Uncounted rounds first: the registry runs the SDK client for the first time here, and its first
// discoveries are twice as slow until the JIT has compiled that code (measured: about ten rounds).
const WARM_UP_ROUNDS = 5;

// add_service + remove_service of server-everything through the registry, against a bare SDK client's
// connect + tools/list of the same server; interleaved, after uncounted warm-up rounds.
async function discoveryScenario(registryUrl: string, iterations: number): Promise<Sequential> {
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
    await admin.connect(new StreamableHTTPClientTransport(new URL(`${registryUrl}/mcp`), { requestInit: { headers: { authorization: `Bearer ${ADMIN}` } } }));
    const times: Sequential = { bare: [], add: [], remove: [], tools: 0 };
    for (let k = -WARM_UP_ROUNDS; k < iterations; k++) {
      const name = `everything-${k + WARM_UP_ROUNDS}`;
      let t = performance.now();
      times.tools = await bareDiscovery(endpoint);
      const bare = performance.now() - t;
      t = performance.now();
      const added = await admin.callTool({ name: "add_service", arguments: { service_name: name, endpoint, description: "Reference server" } });
      const add = performance.now() - t;
      if (added.isError || !String((added.content as { text?: string }[])[0]?.text).includes(`added with ${times.tools} tools`))
        throw new Error(`add_service: ${JSON.stringify(added)}`);
      t = performance.now();
      const removed = await admin.callTool({ name: "remove_service", arguments: { service_name: name } });
      const remove = performance.now() - t;
      if (removed.isError) throw new Error(`remove_service: ${JSON.stringify(removed)}`);
      if (k < 0) continue;
      times.bare.push(bare);
      times.add.push(add);
      times.remove.push(remove);
    }
    log(
      `add_service ${mean(times.add).toFixed(1)} ms, remove_service ${mean(times.remove).toFixed(1)} ms, bare connect + tools/list ${mean(times.bare).toFixed(1)} ms (mean of ${iterations})`,
    );
    return times;
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
    // A few at a time: concurrent writes share the registry's commits.
    for (let i = 0; i < many.length; i += 10)
      await Promise.all(many.slice(i, i + 10).map((t) => call("attach_role_to_tool", { tool_id: t.id, role_name: `gateway-${GATEWAY_TOOLS}` })));
    await call("assign_role_to_user", { user_id: "gateway-caller", role_name: "gateway-echo" });
    await call("assign_role_to_user", { user_id: "gateway-lister", role_name: `gateway-${GATEWAY_TOOLS}` });
    const key = (await call("create_user_key", { user_id: "gateway-caller", label: "bench" })).structuredContent?.key;
    if (typeof key !== "string") throw new Error("gateway set-up: create_user_key returned no key");
    return { callKey: key, echoTool: "bench-echo__echo", listUser: "gateway-lister" };
  } finally {
    await admin.close().catch(() => {});
  }
}

type GatewayTimes = { direct: number[]; gateway: number[]; directList: number[]; gatewayList: number[]; pages: number };

// The gateway's latency, one request at a time: the same tools/call straight to the bare SDK server and
// through the gateway, interleaved (which goes first alternates), `calls` of each after uncounted warm-up
// calls; then the 500 tools listed straight from the service (one answer) and through the gateway (every
// page, following nextCursor), interleaved likewise. Plain fetch, as the probes send requests.
async function gatewaySequential(registryUrl: string, sdkUrl: string, g: Gateway, calls: number): Promise<GatewayTimes> {
  type Answer = { content?: { text?: string }[]; tools?: unknown[]; nextCursor?: string; isError?: boolean } | undefined;
  const post = async (url: string, headers: Record<string, string>, method: string, params?: unknown): Promise<Answer> => {
    const res = await fetch(url, { method: "POST", headers, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, ...(params ? { params } : {}) }) });
    const text = await res.text();
    if (res.status !== 200) throw new Error(`${url}: status ${res.status}: ${text.slice(0, 200)}`);
    return (JSON.parse(text) as { result?: Answer }).result;
  };
  // a and b in turn, which goes first alternating, `calls` times each after the warm-up: the times of each.
  const interleaved = async (a: () => Promise<void>, b: () => Promise<void>): Promise<[number[], number[]]> => {
    const out: [number[], number[]] = [[], []];
    for (let k = -Math.min(50, calls); k < calls; k++) {
      for (const which of k % 2 === 0 ? [0, 1] : [1, 0]) {
        const t = performance.now();
        await [a, b][which]();
        if (k >= 0) out[which].push(performance.now() - t);
      }
    }
    return out;
  };
  const echo = async (url: string, headers: Record<string, string>, name: string) => {
    const r = await post(url, headers, "tools/call", { name, arguments: { text: "hello" } });
    if (r?.content?.[0]?.text !== "hello" || r.isError) throw new Error(`${url}: wrong tools/call answer ${JSON.stringify(r).slice(0, 200)}`);
  };
  const [direct, gateway] = await interleaved(
    () => echo(`${sdkUrl}/mcp`, MCP_HEADERS, "echo"),
    () => echo(`${registryUrl}/gateway/mcp`, { ...MCP_HEADERS, authorization: `Bearer ${g.callKey}` }, g.echoTool),
  );

  let pages = 0;
  const listDirect = async () => {
    const r = await post(`${sdkUrl}/many/mcp`, MCP_HEADERS, "tools/list");
    if (r?.tools?.length !== GATEWAY_TOOLS) throw new Error(`direct tools/list: ${r?.tools?.length} tools, not ${GATEWAY_TOOLS}`);
  };
  const listGateway = async () => {
    const headers = { ...MCP_HEADERS, authorization: `Bearer ${AGENT}`, "x-registry-user": g.listUser };
    let count = 0;
    let cursor: string | undefined;
    for (pages = 0; pages === 0 || cursor; pages++) {
      const r = await post(`${registryUrl}/gateway/mcp`, headers, "tools/list", cursor ? { cursor } : undefined);
      count += r?.tools?.length ?? 0;
      cursor = r?.nextCursor;
    }
    if (count !== GATEWAY_TOOLS) throw new Error(`gateway tools/list: ${count} tools, not ${GATEWAY_TOOLS}`);
  };
  const [directList, gatewayList] = await interleaved(listDirect, listGateway);

  const median = (xs: number[]) => percentile([...xs].sort((x, y) => x - y), 50).toFixed(2);
  log(
    `gateway, sequential (median of ${calls}): tools/call ${median(gateway)} ms, direct ${median(direct)} ms; ` +
      `tools/list of ${GATEWAY_TOOLS} tools ${median(gatewayList)} ms (${pages} pages), direct ${median(directList)} ms (one answer)`,
  );
  return { direct, gateway, directList, gatewayList, pages };
}

function summarize(loads: Load[], measured: Map<string, Measured[]>, paired: Map<string, Measured>, seq: Sequential, gw: GatewayTimes): ScenarioResult[] {
  const avg = (name: string) => {
    const runs = measured.get(name)!;
    const m = (f: (r: Measured) => number) => runs.reduce((s, r) => s + f(r), 0) / runs.length;
    const known = runs.every((r) => r.serverCpu !== null);
    return {
      reqPerSec: m((r) => r.reqPerSec),
      p50Ms: m((r) => r.p50Ms),
      p99Ms: m((r) => r.p99Ms),
      requests: m((r) => r.requests),
      ...(runs.length > 1 ? { runs: runs.map((r) => Math.round(r.reqPerSec)) } : {}),
      serverCpu: known ? Math.round(m((r) => r.serverCpu!)) : null,
      cpuUsPerReq: known ? Math.round(m((r) => r.cpuUsPerReq!)) : null,
      generatorCpu: Math.round(m((r) => r.generatorCpu)),
      otherCpu: runs.every((r) => r.otherCpu !== null) ? Math.round(m((r) => r.otherCpu!)) : null,
      ...(runs.every((r) => r.downstreamCpu === undefined)
        ? {}
        : runs.every((r) => r.downstreamCpu != null)
          ? { downstreamCpu: Math.round(m((r) => r.downstreamCpu!)), downstreamCpuUsPerReq: Math.round(m((r) => r.downstreamUsPerReq!)) }
          : { downstreamCpu: null, downstreamCpuUsPerReq: null }),
    };
  };
  const rows: ScenarioResult[] = loads.map((l) => {
    const a = avg(l.name);
    // A scenario against the baseline run just before it; a baseline row is the mean of its runs.
    const base = paired.get(l.name) ?? avg(l.vs);
    // A gateway call costs the registry and the downstream service: its CPU ratio counts both.
    const cpu = a.cpuUsPerReq && a.downstreamCpuUsPerReq !== null ? a.cpuUsPerReq + (a.downstreamCpuUsPerReq ?? 0) : null;
    const cpuRatio = cpu && base.cpuUsPerReq ? base.cpuUsPerReq / cpu : null;
    return { name: l.name, kind: "load", vs: l.vs, ...a, ratio: a.reqPerSec / base.reqPerSec, cpuRatio };
  });
  const BARE = "bare SDK client connect + tools/list";
  const row = (name: string, times: number[]): ScenarioResult => {
    const sorted = [...times].sort((a, b) => a - b);
    return {
      name,
      kind: "sequential",
      vs: BARE,
      reqPerSec: 1000 / mean(times),
      meanMs: mean(times),
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      ratio: mean(times) / mean(seq.bare),
      requests: times.length,
    };
  };
  rows.push(row(BARE, seq.bare), row("add_service (server-everything)", seq.add), row("remove_service", seq.remove));
  // The gateway's sequential rows: median times against their direct baseline's median.
  const medianRow = (name: string, times: number[], vs: string, base: number[]): ScenarioResult => {
    const sorted = [...times].sort((a, b) => a - b);
    const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 50);
    return {
      name,
      kind: "sequential",
      vs,
      ratioOf: "median",
      reqPerSec: 1000 / mean(times),
      meanMs: mean(times),
      p50Ms: percentile(sorted, 50),
      p99Ms: percentile(sorted, 99),
      ratio: median(times) / median(base),
      requests: times.length,
    };
  };
  rows.push(
    medianRow(SDK_CALL_SEQUENTIAL, gw.direct, SDK_CALL_SEQUENTIAL, gw.direct),
    medianRow(GATEWAY_CALL_SEQUENTIAL, gw.gateway, SDK_CALL_SEQUENTIAL, gw.direct),
    medianRow(SDK_LIST_MANY, gw.directList, SDK_LIST_MANY, gw.directList),
    medianRow(GATEWAY_LIST_MANY, gw.gatewayList, SDK_LIST_MANY, gw.directList),
  );
  return rows;
}

function checkTargets(rows: ScenarioResult[], peakRssMb: number | null): Target[] {
  const ratio = (name: string) => rows.find((r) => r.name === name)!.ratio;
  const min = (scenario: string, want: number): Target => ({
    name: `${scenario} >= ${want} x ${rows.find((r) => r.name === scenario)!.vs}`,
    scenario,
    want: `>= ${want}`,
    value: ratio(scenario),
    pass: ratio(scenario) >= want,
  });
  return [
    min("GET /token", 0.5),
    min("POST /role_for_user", 0.5),
    min("POST /tools_for_role", 0.25),
    min("MCP tools/call get_tools", 0.7),
    min("gateway tools/call echo", 0.5),
    {
      name: `${GATEWAY_CALL_SEQUENTIAL}: median <= 2 x ${SDK_CALL_SEQUENTIAL}`,
      scenario: GATEWAY_CALL_SEQUENTIAL,
      want: "<= 2",
      value: ratio(GATEWAY_CALL_SEQUENTIAL),
      pass: ratio(GATEWAY_CALL_SEQUENTIAL) <= 2,
    },
    {
      name: "add_service <= 1.5 x bare SDK client connect + tools/list",
      scenario: "add_service (server-everything)",
      want: "<= 1.5",
      value: ratio("add_service (server-everything)"),
      pass: ratio("add_service (server-everything)") <= 1.5,
    },
    { name: "peak RSS of the registry < 150 MB", scenario: "peak RSS", want: "< 150", value: peakRssMb, pass: peakRssMb !== null && peakRssMb < 150 },
  ];
}

// How far each baseline's runs spread over the benchmark ((max - min) / mean): how much the machine
// drifted, which the paired ratios avoid but the baseline rows (means of the runs) carry.
function baselineDrift(baselines: Load[], measured: Map<string, Measured[]>): Record<string, number> | null {
  const out: Record<string, number> = {};
  for (const b of baselines) {
    const runs = measured.get(b.name)!.map((r) => r.reqPerSec);
    if (runs.length >= 2) out[b.name] = Math.round(((Math.max(...runs) - Math.min(...runs)) / mean(runs)) * 100);
  }
  return Object.keys(out).length ? out : null;
}

function formatReport(
  runtime: string,
  engine: string,
  rows: ScenarioResult[],
  targets: Target[],
  rss: { registry: number | null; hono: number | null; sdk: number | null },
  drift: Record<string, number> | null,
): string {
  const head = ["scenario", "req/s", "p50 ms", "p99 ms", "ratio", "CPU µs/req", "CPU ratio", "server CPU", "load gen CPU", "other CPU", "vs"];
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
    r.name === r.vs ? "(baseline)" : r.vs,
  ]);
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((row) => row[c].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (c === 0 || c === head.length - 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
      .join("  ")
      .trimEnd();
  const noisy = drift && Object.values(drift).some((d) => d > 10);
  const saturated = rows.filter((r) => (r.generatorCpu ?? 0) >= 90).map((r) => r.name);
  const disturbed = rows.filter((r) => (r.otherCpu ?? 0) >= 20).map((r) => r.name);
  const list = rows.find((r) => r.name === GATEWAY_LIST_MANY);
  return [
    "",
    `${runtime}, ${engine}. ratio: req/s over the baseline's (sequential rows: time over the baseline's, lower is better: mean times,`,
    "the gateway's median times). CPU ratio: the baseline's server CPU per request over this one's (a gateway row: over the",
    "registry's + the downstream service's, shown as CPU µs/req registry+downstream). Targets are judged on ratio.",
    line(head),
    ...body.map(line),
    saturated.length ? `The load generator was saturated (>= 90% CPU) in: ${saturated.join(", ")}: req/s there is a lower bound of the server's.` : null,
    engine === "postgres" ? "other CPU includes the PostgreSQL server's work for these requests." : null,
    disturbed.length && engine !== "postgres" ? `Other processes used >= 20% of a core during: ${disturbed.join(", ")}: noisy, repeat the run on a quiet machine.` : null,
    "",
    ...targets.map((t) => `${t.pass ? "PASS" : "MISS"}  ${t.name}: ${t.value === null ? "not measured" : t.value.toFixed(2)}`),
    list
      ? `INFO  ${GATEWAY_LIST_MANY}, every page: ${ms(list.p50Ms)} ms median, ${list.ratio.toFixed(2)} x ${SDK_LIST_MANY} in one answer (reported, no target)`
      : null,
    rss.registry === null
      ? "peak RSS: not measured (needs /proc)"
      : `peak RSS of the registry process: ${rss.registry} MB (of the baselines' processes, under their loads: bare Hono ${rss.hono} MB, bare SDK ${rss.sdk} MB)`,
    drift
      ? `spread of the baselines' runs over the benchmark: ${Object.entries(drift)
          .map(([k, v]) => `${k} ${v}%`)
          .join(", ")}${noisy ? " — the machine drifted; each ratio is taken against the baseline run just before its scenario" : ""}`
      : null,
  ]
    .filter((line) => line !== null)
    .join("\n");
}

type Child = { url: string; pid: number; output(): string; stop(): Promise<void> };

// Starts a server process and waits for its ready line (group 1 of `ready`, when there is one, is its port).
async function startChild(what: string, cmd: string, args: string[], env: Record<string, string>, ready: RegExp): Promise<Child> {
  const proc: ChildProcess = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  const port = await new Promise<number>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`${what} did not start:\n${out}`)), 60_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      // Keep only the tail: a long run must not grow this process's memory.
      if (out.length > 100_000) out = out.slice(-50_000);
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        done(Number(m[1] ?? 0));
      }
    };
    proc.stdout!.on("data", onData);
    proc.stderr!.on("data", onData);
    proc.once("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`${what} exited with ${code}:\n${out}`));
    });
  }).catch(async (err) => {
    await stop();
    throw err;
  });
  return { url: `http://127.0.0.1:${port}`, pid: proc.pid!, output: () => out, stop };
}

/**
 * How `npm start` (package.json) or `deno task start` (deno.json) runs the registry, read from those files
 * so the benchmark measures exactly what people run: the runtime's flags (V8's memory settings), and on
 * Node the bundle `npm run build` writes (built here first).
 */
function startCommand(): { runtimeFlags: string[]; registry: [string, string[]] } {
  if (DENO) {
    const task = JSON.parse(readFileSync(join(ROOT, "deno.json"), "utf8")).tasks.start as string;
    const [, v8, permissions] = /^deno run (--v8-flags=\S+ )?(.*) main\.ts$/.exec(task) ?? [];
    if (permissions === undefined) throw new Error(`deno.json's start task is not "deno run <flags> main.ts": ${task}`);
    const runtimeFlags = v8 ? [v8.trim()] : [];
    return { runtimeFlags, registry: [process.execPath, ["run", ...runtimeFlags, ...permissions.split(" "), "main.ts"]] };
  }
  const { prestart, start } = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).scripts as Record<string, string>;
  const [, flags] = /^node (.*?) ?dist\/main\.mjs$/.exec(start) ?? [];
  if (flags === undefined || prestart !== "npm run build --silent")
    throw new Error(`package.json's start is not "npm run build --silent" then "node <flags> dist/main.mjs": ${prestart}; ${start}`);
  execFileSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: "inherit" });
  const runtimeFlags = flags ? flags.split(" ") : [];
  return { runtimeFlags, registry: [process.execPath, [...runtimeFlags, "dist/main.mjs"]] };
}

// A baseline runs with the registry's runtime flags (same runtime, same settings): the ratios then measure
// the registry's own cost. Node 20 cannot run .ts itself: tsx (the baselines are not bundled).
function baselineCommand(runtimeFlags: string[], kind: "hono" | "sdk"): [string, string[]] {
  return DENO
    ? [process.execPath, ["run", ...runtimeFlags, ...DENO_FLAGS, "bench/baseline.ts", kind]]
    : [process.execPath, [...runtimeFlags, "--import", "tsx", "bench/baseline.ts", kind]];
}

async function seedDatabase(url: string, secret: string): Promise<Fixture> {
  const config = loadConfig({ DATABASE_URL: url, REGISTRY_SECRET: secret, MCP_PORT: "0" });
  const { ctx, close } = await openContext(
    config,
    createLog(() => {}),
  );
  try {
    return await seed(ctx);
  } finally {
    await close();
  }
}

// CPU time (user + system) a process has used, in seconds, from /proc (Linux); null elsewhere.
function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // utime and stime, fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

// CPU time the processes of the whole machine have used (and the hypervisor has stolen), in seconds, from
// /proc/stat; null elsewhere. Interrupt time is left out: most of it is our own loopback traffic.
function machineCpuSeconds(): number | null {
  try {
    const [, user, nice, system, , , , , steal] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).map(Number);
    return (user + nice + system + steal) / 100;
  } catch {
    return null;
  }
}

// The peak resident set size of a process (VmHWM), in MB, from /proc (Linux); null elsewhere.
function peakRss(pid: number): number | null {
  try {
    const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb ? Math.round(Number(kb) / 1024) : null;
  } catch {
    return null;
  }
}

async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => done(port));
    });
  });
}

function mean(xs: number[]): number {
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function log(line: string): void {
  console.error(`bench: ${line}`);
}

await main().then(
  () => process.exit(0),
  (err) => {
    console.error(`bench failed: ${(err as Error).message}`);
    process.exit(1);
  },
);
