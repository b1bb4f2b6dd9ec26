/**
 * What the benchmark's runs share: starting the registry and the other processes, the load scenarios of the
 * agent endpoints, driving a load with autocannon and measuring it (latency, CPU, RSS from /proc), and the
 * small helpers. bench.ts (the small shape, the gateway, add_service) and large.ts (the large shape) use it.
 */
import type { Buffer } from "node:buffer";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";
import { dirname, join, resolve } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { openContext } from "../registry.ts";
import { loadConfig } from "../shared/config.ts";
import { createLog } from "../shared/log.ts";
import { type Fixture, type SeedOptions, seed } from "./seed.ts";
import { type Shape, spread } from "./shape.ts";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const DENO = Boolean(process.versions.deno);
const DENO_FLAGS = ["--allow-net", "--allow-env", "--allow-read", "--allow-write", "--allow-ffi", "--allow-sys"];
export const ADMIN = "bench-admin-key-0123456789abcdef";
export const AGENT = "bench-agent-key-0123456789abcdef";
export const MCP_HEADERS = { "content-type": "application/json", accept: "application/json, text/event-stream", "mcp-protocol-version": "2025-06-18" };
export const HONO = "bare Hono JSON route";
export const SDK_CALL = "bare SDK tools/call";
export const SDK_LIST = "bare SDK tools/list";

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
  /** load: req/s over the baseline's req/s (higher is better); sequential: time over the baseline's, by ratioOf (lower is better). */
  ratio: number;
  meanMs?: number;
  requests?: number;
  /** CPU time of the server process during the run, in % of one core; and of the load generator (this process). */
  serverCpu?: number | null;
  /** Server CPU time per request, in microseconds (sequential rows: summed over each request's own span). */
  cpuUsPerReq: number | null;
  /** The baseline's server CPU per request over this one's: the ratio a saturated load generator cannot blur.
   * For a gateway scenario, over the registry's and the downstream service's CPU per request together. */
  cpuRatio?: number | null;
  /** A gateway scenario: CPU of the downstream service's process (the sdk baseline), in % of one core and per request. */
  downstreamCpu?: number | null;
  downstreamCpuUsPerReq?: number | null;
  /** CPU used meanwhile by the rest of the machine (other processes), in % of one core: the run's noise. */
  otherCpu?: number | null;
  /** The part of otherCpu the hypervisor stole for other machines. */
  stealCpu?: number | null;
  /** VmRSS of the serving process right after this scenario, in MB (a baseline run more than once: after its last run). */
  rssMb: number | null;
  /** req/s of each run, when the scenario ran more than once (the baselines, before each scenario). */
  runs?: number[];
  generatorCpu?: number;
};

/** How the benchmark runs (the command line's options). */
export type Settings = {
  quick: boolean;
  shape: "small" | "large";
  duration: number;
  warmup: number;
  connections: number;
  iterations: number;
  calls: number;
  /** The large shape: the refresher's interval and discovery timeout (s), and when the seeded services are first due. */
  refreshInterval: number;
  discoveryTimeout: number;
  refreshDue: "spread" | "now";
  /** The large shape: seconds of each fixed-rate /token run (alone, with the poller, the refresh-off reference). */
  fixedSeconds: number;
};

export type Target = { name: string; scenario: string; want: string; value: number | null; pass: boolean };

export type Load = {
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

const json = (body: unknown) => JSON.stringify(body);
export const rpc = (method: string, params?: unknown) => json({ jsonrpc: "2.0", id: 1, method, ...(params ? { params } : {}) });
export const result = (body: unknown) =>
  (body as { result?: { structuredContent?: Record<string, unknown>; tools?: { name: string }[]; content?: { text?: string }[]; isError?: boolean } }).result;

/** The baselines: the bare Hono route and the bare SDK server's tools/call and tools/list. */
export function baselineScenarios(): Load[] {
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
  ];
}

/**
 * The agent endpoints, each request i for another key spread over all of them (shape.ts spread): users and
 * their tokens, roles, services. `toolRoles`: the roles /tools_for_role asks for (the small shape's target
 * is the role with 200 tools; the large shape cycles over every role).
 */
export function agentScenarios(f: Fixture, toolRoles: Fixture["roles"]): Load[] {
  const agent = { authorization: `Bearer ${AGENT}` };
  const post = { ...agent, "content-type": "application/json" };
  const token = (i: number) => f.tokens[spread(i, f.tokens.length)];
  const user = (i: number) => f.users[spread(i, f.users.length)];
  const role = (i: number) => f.roles[spread(i, f.roles.length)];
  const toolRole = (i: number) => toolRoles[spread(i, toolRoles.length)];
  const service = (i: number) => f.services[spread(i, f.services.length)];
  return [
    {
      name: "GET /token",
      server: "registry",
      vs: HONO,
      method: "GET",
      headers: agent,
      // A different user (and service) each request, query string form, as agents ask before each call.
      request: (i) => ({ path: `/token?${new URLSearchParams({ service_name: token(i).service, user_id: token(i).user })}` }),
      check: (b, i) => {
        const a = b as { token?: string; method_authorization?: string };
        return a.token === token(i).token && a.method_authorization === token(i).method ? null : `wrong token answer ${json(b)}`;
      },
    },
    {
      name: "POST /role_for_user",
      server: "registry",
      vs: HONO,
      method: "POST",
      headers: post,
      request: (i) => ({ path: "/role_for_user", body: json({ user_id: user(i).user }) }),
      check: (b, i) => ((b as { role?: string }).role === user(i).role ? null : `wrong role ${json(b)}`),
    },
    {
      name: "POST /system_prompt_for_role",
      server: "registry",
      vs: HONO,
      method: "POST",
      headers: post,
      request: (i) => ({ path: "/system_prompt_for_role", body: json({ role: role(i).name }) }),
      check: (b, i) => ((b as { default_system_prompt?: string }).default_system_prompt === role(i).prompt ? null : `wrong prompt ${json(b)}`),
    },
    {
      name: "POST /tools_for_role",
      server: "registry",
      vs: HONO,
      method: "POST",
      headers: post,
      request: (i) => ({ path: "/tools_for_role", body: json({ role: toolRole(i).name }) }),
      check: (b, i) => ((b as { tools?: unknown[] }).tools?.length === toolRole(i).tools ? null : "wrong number of tools"),
    },
    {
      name: "GET /list_services",
      server: "registry",
      vs: HONO,
      method: "GET",
      headers: agent,
      request: () => ({ path: "/list_services" }),
      check: (b) => (Object.keys((b as { services?: object }).services ?? {}).length === f.services.length ? null : "wrong number of services"),
    },
    {
      name: "MCP tools/call get_tools",
      server: "registry",
      vs: SDK_CALL,
      method: "POST",
      headers: { ...agent, ...MCP_HEADERS },
      request: (i) => ({ path: "/mcp", body: rpc("tools/call", { name: "get_tools", arguments: { service_name: service(i) } }) }),
      check: (b) => ((result(b)?.structuredContent?.tools as unknown[] | undefined)?.length === f.shape.toolsPerService ? null : `wrong get_tools answer ${json(b).slice(0, 200)}`),
    },
  ];
}

// A wrong answer measured fast is no result: check the first request and one further along before loading.
async function probe(url: string, load: Load): Promise<void> {
  for (const i of [0, 37]) {
    const { path, body } = load.request(i);
    const res = await fetchOnce(url + path, { method: load.method, headers: load.headers, body });
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

// fetch, tried a second time on a network error: a kept-alive connection the server closed just as it was
// reused (its 5 s idle timeout, between two probes seconds apart) fails with "fetch failed", not an answer.
async function fetchOnce(url: string, init: RequestInit): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    log(`${url}: ${(err as Error).message} (${String((err as { cause?: unknown }).cause ?? "")}), trying once more`);
    return fetch(url, init);
  }
}

export type Measured = {
  reqPerSec: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  serverCpu: number | null;
  cpuUsPerReq: number | null;
  generatorCpu: number;
  otherCpu: number | null;
  /** CPU the hypervisor stole meanwhile (part of otherCpu), in % of one core. */
  stealCpu: number | null;
  /** VmRSS of the serving process right after the run. */
  rssMb: number | null;
  /** A gateway scenario: the downstream service's process, as serverCpu and cpuUsPerReq are the registry's. */
  downstreamCpu?: number | null;
  downstreamUsPerReq?: number | null;
};

/** How a load runs: for `seconds` (or until `until` settles, if sooner), as fast as it goes or at `rate` req/s over all connections. */
export type LoadOptions = { seconds: number; connections: number; pid: number; downstreamPid?: number; rate?: number; until?: Promise<unknown> };

export async function measure(url: string, load: Load, o: LoadOptions): Promise<Measured> {
  let i = 0;
  const first = load.request(0);
  const down0 = o.downstreamPid === undefined ? null : cpuSeconds(o.downstreamPid);
  const cpu0 = cpuSeconds(o.pid);
  const all0 = machineCpuSeconds();
  const gen0 = process.cpuUsage();
  const t0 = performance.now();
  const running = autocannon({
    url: url + first.path,
    connections: o.connections,
    duration: o.seconds,
    timeout: 10,
    // Samples every 250 ms: the run ends on a sample, so a 1.5 s run is not stretched to 2 s.
    sampleInt: 250,
    method: load.method,
    headers: load.headers,
    // At a fixed rate, a late answer delays the requests behind it: autocannon counts them late (coordinated omission).
    ...(o.rate ? { overallRate: o.rate } : {}),
    requests: [{ setupRequest: (req) => ({ ...req, ...load.request(i++) }) }],
  });
  // Stopped early (the refresher's pass is over): the figures are of the run so far.
  const stop = () => running.stop();
  void o.until?.then(stop, stop);
  const r = await running;
  const wall = (performance.now() - t0) / 1000;
  const cpu1 = cpuSeconds(o.pid);
  const down1 = o.downstreamPid === undefined ? null : cpuSeconds(o.downstreamPid);
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
      cpu0 === null || cpu1 === null || all0 === null || all1 === null
        ? null
        : Math.max(0, Math.round(((all1.all - all0.all - (cpu1 - cpu0) - (down ?? 0) - genSeconds) / wall) * 100)),
    // The part of it the hypervisor took for other machines: no process of this one can be blamed.
    stealCpu: all0 === null || all1 === null ? null : Math.round(((all1.steal - all0.steal) / wall) * 100),
    rssMb: rss(o.pid),
    ...(o.downstreamPid === undefined
      ? {}
      : { downstreamCpu: down === null ? null : Math.round((down / wall) * 100), downstreamUsPerReq: down === null ? null : Math.round((down * 1e6) / r.requests.total) }),
  };
}

/**
 * A load row: the mean of a scenario's runs, its ratio against `base` (the baseline run just before it,
 * or the baseline's mean), and the CPU ratio (a gateway scenario: the registry's and the downstream's CPU together).
 */
export function loadRow(load: Load, runs: Measured[], base: { reqPerSec: number; cpuUsPerReq: number | null }): ScenarioResult {
  const m = (f: (r: Measured) => number) => runs.reduce((s, r) => s + f(r), 0) / runs.length;
  const known = runs.every((r) => r.serverCpu !== null);
  const downstream = runs.some((r) => r.downstreamCpu !== undefined);
  const downKnown = runs.every((r) => r.downstreamCpu != null);
  const cpuUsPerReq = known ? Math.round(m((r) => r.cpuUsPerReq!)) : null;
  const downUs = downstream ? (downKnown ? Math.round(m((r) => r.downstreamUsPerReq!)) : null) : undefined;
  const cpu = cpuUsPerReq && downUs !== null ? cpuUsPerReq + (downUs ?? 0) : null;
  const reqPerSec = m((r) => r.reqPerSec);
  return {
    name: load.name,
    kind: "load",
    vs: load.vs,
    reqPerSec,
    p50Ms: m((r) => r.p50Ms),
    p99Ms: m((r) => r.p99Ms),
    ratio: reqPerSec / base.reqPerSec,
    requests: m((r) => r.requests),
    ...(runs.length > 1 ? { runs: runs.map((r) => Math.round(r.reqPerSec)) } : {}),
    serverCpu: known ? Math.round(m((r) => r.serverCpu!)) : null,
    cpuUsPerReq,
    cpuRatio: cpu && base.cpuUsPerReq ? base.cpuUsPerReq / cpu : null,
    generatorCpu: Math.round(m((r) => r.generatorCpu)),
    otherCpu: runs.every((r) => r.otherCpu !== null) ? Math.round(m((r) => r.otherCpu!)) : null,
    stealCpu: runs.every((r) => r.stealCpu !== null) ? Math.round(m((r) => r.stealCpu!)) : null,
    rssMb: runs[runs.length - 1].rssMb,
    // Only a gateway scenario has a downstream (undefined otherwise; null when /proc cannot tell).
    downstreamCpu: downstream ? (downKnown ? Math.round(m((r) => r.downstreamCpu!)) : null) : undefined,
    downstreamCpuUsPerReq: downUs,
  };
}

/** The mean of runs as the baseline of a ratio. */
export function meanOf(runs: Measured[]): { reqPerSec: number; cpuUsPerReq: number | null } {
  const known = runs.every((r) => r.cpuUsPerReq !== null);
  return { reqPerSec: mean(runs.map((r) => r.reqPerSec)), cpuUsPerReq: known ? mean(runs.map((r) => r.cpuUsPerReq!)) : null };
}

/** The servers a run measures, by Load["server"]. */
export type Servers = { registry: Child; hono: Child; sdk: Child };

/**
 * Runs `loads` (registry scenarios), each right after a run of its baseline, its ratio taken against that
 * run: this VM's speed drifts by up to 70% over a benchmark, and adjacent runs share the same conditions.
 * Every run is recorded in `measured` (by name); returns each scenario's paired baseline run.
 */
export async function runPaired(
  loads: Load[],
  baselines: Load[],
  servers: Servers,
  s: { warmup: number; duration: number; connections: number },
  measured: Map<string, Measured[]>,
): Promise<Map<string, Measured>> {
  const paired = new Map<string, Measured>();
  for (const load of loads) {
    paired.set(load.name, await runOne(baselines.find((b) => b.name === load.vs)!, servers, s, measured));
    await runOne(load, servers, s, measured);
  }
  return paired;
}

/** Probes a load, warms it up (unrecorded), measures it and logs its figures. */
async function runOne(load: Load, servers: Servers, s: { warmup: number; duration: number; connections: number }, measured: Map<string, Measured[]>): Promise<Measured> {
  const server = servers[load.server];
  await probe(server.url, load);
  const downstreamPid = load.downstream && servers[load.downstream].pid;
  await measure(server.url, load, { seconds: s.warmup, connections: s.connections, pid: server.pid, downstreamPid });
  const m = await measure(server.url, load, { seconds: s.duration, connections: s.connections, pid: server.pid, downstreamPid });
  measured.set(load.name, [...(measured.get(load.name) ?? []), m]);
  // The registry's peak RSS so far: which scenario drives it.
  const rssNote = load.server === "registry" ? `, registry RSS ${m.rssMb} MB, peak so far ${peakRss(server.pid)} MB` : "";
  const down = m.downstreamUsPerReq == null ? "" : `, CPU µs/req registry ${m.cpuUsPerReq} + downstream ${m.downstreamUsPerReq}`;
  log(`${load.name}: ${Math.round(m.reqPerSec)} req/s, p50 ${m.p50Ms} ms, p99 ${m.p99Ms} ms${down}${rssNote}`);
  return m;
}

export type Child = {
  url: string;
  pid: number;
  /** From spawn to the ready line, in ms. */
  startupMs: number;
  /** The last 50-100 KB the process wrote (stdout and stderr). */
  output(): string;
  /** Calls `fn` with every later line the process writes; returns how to stop. */
  onLine(fn: (line: string) => void): () => void;
  stop(): Promise<void>;
};

// Starts a server process and waits for its ready line (group 1 of `ready`, when there is one, is its port).
export async function startChild(what: string, cmd: string, args: string[], env: Record<string, string>, ready: RegExp): Promise<Child & { match: RegExpExecArray }> {
  const t0 = performance.now();
  const proc: ChildProcess = spawn(cmd, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const partial = { stdout: "", stderr: "" };
  const watchers = new Set<(line: string) => void>();
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    const timer = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  // Whole lines to the watchers, per stream (a chunk may end inside a line).
  const toLines = (stream: "stdout" | "stderr", text: string) => {
    const lines = (partial[stream] + text).split("\n");
    partial[stream] = lines.pop()!;
    for (const line of lines) for (const watch of watchers) watch(line);
  };
  const match = await new Promise<RegExpExecArray>((done, fail) => {
    const timer = setTimeout(() => fail(new Error(`${what} did not start:\n${out}`)), 120_000);
    const onData = (stream: "stdout" | "stderr") => (d: Buffer) => {
      out += d.toString();
      toLines(stream, d.toString());
      // Keep only the tail: a long run must not grow this process's memory.
      if (out.length > 100_000) out = out.slice(-50_000);
      const m = ready.exec(out);
      if (m) {
        clearTimeout(timer);
        done(m);
      }
    };
    proc.stdout!.on("data", onData("stdout"));
    proc.stderr!.on("data", onData("stderr"));
    proc.once("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`${what} exited with ${code}:\n${out}`));
    });
  }).catch(async (err) => {
    await stop();
    throw err;
  });
  const startupMs = Math.round(performance.now() - t0);
  // A server that dies under load shows up as "fetch failed": say which one, and what it said last.
  let stopping = false;
  proc.once("exit", (code, signal) => {
    if (!stopping) log(`${what} exited unexpectedly (${signal ?? `status ${code}`}), its last output:\n${out.slice(-3000)}`);
  });
  const onLine = (fn: (line: string) => void) => {
    watchers.add(fn);
    return () => watchers.delete(fn);
  };
  const stopOnPurpose = () => {
    stopping = true;
    return stop();
  };
  return { url: `http://127.0.0.1:${Number(match[1] ?? 0)}`, pid: proc.pid!, startupMs, match, output: () => out, onLine, stop: stopOnPurpose };
}

/** The registry's environment: bench keys, 127.0.0.1, a free port, background refresh off unless `extra` says otherwise. */
export function registryEnv(databaseUrl: string, secret: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    DATABASE_URL: databaseUrl,
    REGISTRY_SECRET: secret,
    REGISTRY_SECRET_PREVIOUS: "",
    REGISTRY_ADMIN_KEYS: ADMIN,
    REGISTRY_AGENT_KEYS: AGENT,
    REGISTRY_AUTH: "on",
    MCP_HOST: "127.0.0.1",
    MCP_PORT: "0",
    AGENT_REREAD_HOOK: "",
    REGISTRY_DISCOVERY_TIMEOUT: "",
    // The small shape's services do not exist: background refresh would only measure their failures.
    REGISTRY_REFRESH_INTERVAL: "0",
    ...extra,
  };
}

/** Starts the registry as `npm start` / `deno task start` runs it (startCommand) on a database. */
export function startRegistry(what: string, command: [string, string[]], env: Record<string, string>): Promise<Child> {
  return startChild(what, ...command, env, /MCP Registry listening: MCP endpoint http:\/\/127\.0\.0\.1:(\d+)\/mcp/);
}

/**
 * How `npm start` (package.json) or `deno task start` (deno.json) runs the registry, read from those files
 * so the benchmark measures exactly what people run: the runtime's flags (V8's memory settings), and on
 * Node the bundle `npm run build` writes (built here first).
 */
export function startCommand(): { runtimeFlags: string[]; registry: [string, string[]] } {
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

// A bench script (baseline.ts, downstream.ts) runs with the registry's runtime flags (same runtime, same
// settings): the ratios then measure the registry's own cost. Node 20 cannot run .ts itself: tsx (not bundled).
export function scriptCommand(runtimeFlags: string[], script: string, ...args: string[]): [string, string[]] {
  return DENO ? [process.execPath, ["run", ...runtimeFlags, ...DENO_FLAGS, script, ...args]] : [process.execPath, [...runtimeFlags, "--import", "tsx", script, ...args]];
}

/** Seeds `shape` into the database at `url` (migrated first, as the registry would), with the registry's vault. */
export async function seedDatabase(url: string, secret: string, shape: Shape, options: SeedOptions = {}): Promise<Fixture> {
  const config = loadConfig({ DATABASE_URL: url, REGISTRY_SECRET: secret, MCP_PORT: "0" });
  const { ctx, close } = await openContext(
    config,
    createLog(() => {}),
  );
  try {
    return await seed(ctx, shape, options);
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

// A process's CPU time in seconds at nanosecond resolution: the run time of each of its threads, from
// /proc/<pid>/task/*/schedstat (Linux). For one short call /proc's stat, in 10 ms ticks, is mostly 0 or 10 ms.
// Threads that have ended are not counted: fine for the span of one call. Null elsewhere.
function threadCpuSeconds(pid: number): number | null {
  try {
    let ns = 0;
    for (const task of readdirSync(`/proc/${pid}/task`)) ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]);
    return ns / 1e9;
  } catch {
    return null;
  }
}

// CPU time the processes of the whole machine have used (and the hypervisor has stolen), in seconds, from
// /proc/stat; null elsewhere. Interrupt time is left out: most of it is our own loopback traffic.
function machineCpuSeconds(): { all: number; steal: number } | null {
  try {
    const [, user, nice, system, , , , , steal] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).map(Number);
    return { all: (user + nice + system + steal) / 100, steal: steal / 100 };
  } catch {
    return null;
  }
}

// A line of /proc/<pid>/status in MB (VmHWM: peak resident set size; VmRSS: now), Linux; null elsewhere.
function statusMb(pid: number, field: "VmHWM" | "VmRSS"): number | null {
  try {
    const kb = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
    return kb ? Math.round(Number(kb) / 1024) : null;
  } catch {
    return null;
  }
}

/** The peak resident set size of a process so far, in MB. */
export const peakRss = (pid: number) => statusMb(pid, "VmHWM");
/** The resident set size of a process now, in MB. */
export const rss = (pid: number) => statusMb(pid, "VmRSS");

/**
 * Sequential timing: runs `fn`, returns its time in ms and adds the CPU each process of `pids` spent meanwhile
 * to `cpu` (seconds, by position; null once /proc cannot tell), read per thread at nanosecond resolution.
 */
export async function timed(fn: () => Promise<unknown>, pids: number[], cpu: (number | null)[]): Promise<number> {
  const before = pids.map(threadCpuSeconds);
  const t = performance.now();
  await fn();
  const ms = performance.now() - t;
  pids.forEach((pid, k) => {
    const now = threadCpuSeconds(pid);
    cpu[k] = cpu[k] === null || now === null || before[k] === null ? null : cpu[k]! + now - before[k]!;
  });
  return ms;
}

export async function freePort(): Promise<number> {
  return new Promise((done, fail) => {
    const s = createServer();
    s.once("error", fail);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => done(port));
    });
  });
}

export function mean(xs: number[]): number {
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}

export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

/** The median of unsorted numbers. */
export const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );

export function log(line: string): void {
  console.error(`bench: ${line}`);
}

/** A table: the first and last columns left-aligned, the others right-aligned. */
export function table(head: string[], body: string[][]): string[] {
  const widths = head.map((h, c) => Math.max(h.length, ...body.map((row) => row[c].length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, c) => (c === 0 || c === head.length - 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c])))
      .join("  ")
      .trimEnd();
  return [line(head), ...body.map(line)];
}

/** A target's line: PASS or MISS, its name, its figure. */
export function targetLine(t: Target): string {
  return `${t.pass ? "PASS" : "MISS"}  ${t.name}: ${t.value === null ? "not measured" : t.value.toFixed(2)}`;
}

/** How much of "other CPU" the hypervisor stole (for other machines), when it took any. */
export function stealNote(rows: ScenarioResult[]): string | null {
  const steal = rows.map((r) => r.stealCpu).filter((x): x is number => x != null);
  if (!steal.length || Math.max(...steal) < 5) return null;
  return `Of "other CPU", the hypervisor stole (for other machines) ${Math.round(mean(steal))}% of a core on average, up to ${Math.max(...steal)}%.`;
}
