/**
 * The entry points' command line (--help, strict flags), LOG_FORMAT, stopping when the npm or deno task
 * process that started the registry gets SIGTERM, and the deploy/ files (systemd unit, Dockerfile).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createConnection } from "node:net";
import { dirname, join } from "node:path";
import { build } from "esbuild";
import Database from "libsql";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig, variablesHelp } from "../shared/config.ts";
import { CLEAN_ENV, captured, freePort, ROOT, tempDir, waitFor } from "./helpers.ts";

const MAIN_MJS = join(ROOT, "dist/main.mjs");
const READY = /MCP Registry listening: MCP endpoint http:\/\/127\.0\.0\.1:(\d+)\/mcp/;
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };

type Run = { proc: ChildProcess; stdout: () => string; stderr: () => string; closed: Promise<number | null> };

const started: Run[] = [];
afterAll(() => {
  // Whatever a test left running (its whole process group) is killed; not after each test, as the concurrent ones share this list.
  for (const run of started.splice(0)) {
    try {
      process.kill(-run.proc.pid!, "SIGKILL");
    } catch {
      /* gone */
    }
  }
});

/**
 * Spawns a command in a process group of its own. `closed` resolves with its exit code once it has exited
 * and every process holding its stdout or stderr (its children too) has gone. `unset` removes variables.
 */
function start(cmd: string, args: string[], opts: { env?: Record<string, string>; cwd?: string; unset?: string[] } = {}): Run {
  const env: Record<string, string | undefined> = { ...process.env, ...CLEAN_ENV, ...opts.env };
  for (const name of opts.unset ?? []) delete env[name];
  const proc = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  const run = { proc, ...captured(proc) };
  started.push(run);
  return run;
}

/** Resolves with `promise`, or fails naming `what` after `ms` (a function is asked then, for the state at that moment). */
async function within<T>(promise: Promise<T>, ms: number, what: string | (() => string)): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Timed out after ${ms} ms: ${typeof what === "string" ? what : what()}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** True when something accepts connections on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

/** The live processes of the process group `pgid` ("pid (name) state S parent P"; zombies waiting to be reaped left out, on Linux). */
function groupMembers(pgid: number): string[] {
  if (!existsSync("/proc/self/stat")) {
    try {
      process.kill(-pgid, 0);
      return [`some process of group ${pgid}`];
    } catch {
      return [];
    }
  }
  return readdirSync("/proc")
    .filter((d) => /^\d+$/.test(d))
    .flatMap((pid) => {
      try {
        const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
        const end = stat.lastIndexOf(")");
        const [state, ppid, pgrp] = stat.slice(end + 2).split(" ");
        return Number(pgrp) === pgid && state !== "Z" ? [`${stat.slice(0, end + 1)} state ${state} parent ${ppid}`] : [];
      } catch {
        return [];
      }
    });
}

/** The Deno binary itself (not the npm package's node shim in node_modules/.bin), as the shim finds it. */
function denoBinary(): string {
  return createRequire(join(ROOT, "package.json"))("deno/install_api.cjs").runInstall() as string;
}

beforeAll(async () => {
  // The bundle `node dist/main.mjs` runs, as `npm start` builds it.
  const built = start("npm", ["run", "build", "--silent"]);
  expect(await within(built.closed, 30_000, "npm run build")).toBe(0);
});

describe("--help and -h on every entry point", () => {
  it.concurrent.for([
    ["node dist/main.mjs --help", process.execPath, [MAIN_MJS, "--help"], "Usage: node dist/main.mjs"],
    ["node dist/main.mjs -h", process.execPath, [MAIN_MJS, "-h"], "Usage: node dist/main.mjs"],
    ["npm run stdio -- --help", "npm", ["run", "--silent", "stdio", "--", "--help"], "--user <user_id>"],
    ["npm run gateway -- -h", "npm", ["run", "--silent", "gateway", "--", "-h"], "--user <user_id>"],
    ["npm run import -- --help", "npm", ["run", "--silent", "import", "--", "--help"], "<old DATABASE_URL>"],
    ["npx deno task start --help", "npx", ["deno", "task", "start", "--help"], "Usage: node dist/main.mjs"],
  ] as const)("%s prints the usage and every variable with its default, exits 0, opens and listens on nothing", async ([, cmd, args, own], { expect }) => {
    const [dir, port] = [tempDir(), await freePort()];
    // The bundle runs in an empty directory: its default database (file:registry.db) would appear there.
    const cwd = cmd === process.execPath ? dir : ROOT;
    const run = start(cmd, [...args], { cwd, env: { MCP_PORT: String(port), DATABASE_URL: `file:${join(dir, "r.db")}` } });
    expect(await within(run.closed, 30_000, `${cmd} ${args.join(" ")}`)).toBe(0);
    const help = run.stdout();
    expect(help).toMatch(/^Usage: /);
    expect(help).toContain(own);
    expect(help).toContain("MCP_PORT (default: 8000)\n");
    expect(help).toContain("DATABASE_URL (default: file:registry.db)\n");
    expect(help).toContain("REGISTRY_ADMIN_KEYS (default: none)\n");
    expect(help).toContain("REGISTRY_SECRET (default: none)\n");
    expect(help).toContain("LOG_FORMAT (default: text)\n");
    expect(help).toContain("See docs/configuration.md");
    // Every variable the configuration reads is listed, one line each.
    for (const line of variablesHelp().split("\n")) expect(help).toContain(`  ${line}\n`);
    expect(run.stderr()).not.toMatch(/ERROR|MCP Registry/);
    expect(readdirSync(dir)).toEqual([]);
    expect(await listening(port)).toBe(false);
  });

  it("lists each variable of docs/configuration.md with the default documented there", () => {
    const help = variablesHelp();
    const section = readFileSync(join(ROOT, "docs/configuration.md"), "utf8").split("\n## Variables\n")[1].split("\n## ")[0];
    const rows = [...section.matchAll(/^\| `([A-Z_]+)` \| ([^|]+) \|/gm)];
    expect(rows.length).toBeGreaterThan(20);
    for (const [, name, documented] of rows) {
      const literal = /^`([^`]*)`$/.exec(documented.trim())?.[1];
      expect(help).toContain(`${name} (default: ${literal ?? "none"})`);
    }
  });
});

describe("unknown flags and stray arguments", () => {
  it.concurrent.for([
    ["node dist/main.mjs --verbose", process.execPath, [MAIN_MJS, "--verbose"], "main.ts: unknown option --verbose"],
    ["node dist/main.mjs serve", process.execPath, [MAIN_MJS, "serve"], 'main.ts: unexpected argument "serve"'],
    ["npm run stdio -- --port 9000", "npm", ["run", "--silent", "stdio", "--", "--port", "9000"], "stdio.ts: unknown option --port"],
    ["npm run gateway -- --user", "npm", ["run", "--silent", "gateway", "--", "--user"], "stdio.ts: option --user needs a value"],
    ["npm run import -- --dry-run old.db", "npm", ["run", "--silent", "import", "--", "--dry-run", "old.db"], "import.ts: unknown option --dry-run"],
    ["npm run import -- old.db other.db", "npm", ["run", "--silent", "import", "--", "old.db", "other.db"], 'import.ts: unexpected argument "other.db"'],
  ] as const)("%s: one line on stderr naming it and pointing to --help, exit status 2, nothing opened", async ([, cmd, args, message], { expect }) => {
    const dir = tempDir();
    const run = start(cmd, [...args], { cwd: cmd === process.execPath ? dir : ROOT, env: { MCP_PORT: "0", DATABASE_URL: `file:${join(dir, "r.db")}` } });
    expect(await within(run.closed, 30_000, `${cmd} ${args.join(" ")}`)).toBe(2);
    expect(run.stderr()).toBe(`${message} (run it with --help for the usage)\n`);
    expect(run.stdout()).toBe("");
    expect(readdirSync(dir)).toEqual([]);
  });
});

describe("LOG_FORMAT", () => {
  it("json, set in .env: every line of node dist/main.mjs is a JSON object, from the first; SIGTERM stops it with status 0", async () => {
    const [dir, port] = [tempDir(), await freePort()];
    writeFileSync(join(dir, ".env"), `LOG_FORMAT=json\nMCP_PORT=${port}\nDATABASE_URL=file:${join(dir, "r.db")}\n`);
    // The variables the .env sets are unset here, so that the file's values apply (the environment wins over it).
    const run = start(process.execPath, [MAIN_MJS], { cwd: dir, unset: ["LOG_FORMAT", "MCP_PORT", "DATABASE_URL"] });
    await waitFor(() => READY.test(run.stderr()), `the start-up line\n${run.stderr()}`);
    expect(READY.exec(run.stderr())![1]).toBe(String(port));
    // The Dockerfile's HEALTHCHECK command answers 0 on the running registry, 1 where nothing listens.
    const [, , healthcheck] = JSON.parse(/^\s*CMD (\[.*\])$/m.exec(readFileSync(join(ROOT, "deploy/Dockerfile"), "utf8").split("HEALTHCHECK")[1])![1]) as string[];
    const probe = async (p: number) => start(process.execPath, ["-e", healthcheck], { env: { MCP_PORT: String(p) } }).closed;
    expect(await probe(port)).toBe(0);
    expect(await probe(await freePort())).toBe(1);

    run.proc.kill("SIGTERM");
    expect(await within(run.closed, 10_000, "the registry's exit")).toBe(0);
    const lines = run.stderr().trim().split("\n");
    expect(lines.length).toBeGreaterThanOrEqual(4);
    for (const line of lines) {
      const entry = JSON.parse(line);
      expect(entry).toEqual(expect.objectContaining({ time: expect.stringMatching(/^\d{4}-\d\d-\d\dT/), level: expect.stringMatching(/^(info|warn)$/), msg: expect.any(String) }));
    }
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(expect.arrayContaining(["MCP Registry stopping: SIGTERM", "MCP Registry stopped"]));
    expect(await listening(port)).toBe(false);
  });

  it("json in the environment: a refused import is one JSON line on stderr", async () => {
    const run = start("npm", ["run", "--silent", "import"], { env: { LOG_FORMAT: "json", DATABASE_URL: ":memory:" } });
    expect(await within(run.closed, 30_000, "npm run import")).toBe(1);
    const lines = run.stderr().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0])).toEqual({ time: expect.any(String), level: "error", msg: expect.stringContaining("Usage: npm run import -- <the predecessor's DATABASE_URL>") });
  });
});

describe("SIGTERM to the process that started the registry", () => {
  /**
   * Starts the chain, waits for the registry, sends SIGTERM to the top process only (as `kill <pid>`, a
   * supervisor or a container runtime would), and expects the whole chain gone within a few seconds: the
   * registry's port free, no process left in the group, and the registry's own last line.
   */
  async function stopsOnSigterm(cmd: string, args: string[]) {
    const port = await freePort();
    const run = start(cmd, args, { env: { MCP_PORT: String(port), DATABASE_URL: `file:${join(tempDir(), "r.db")}` } });
    await waitFor(() => READY.test(run.stderr()), `the start-up line\n${run.stderr()}`, 30_000);
    expect(await listening(port)).toBe(true);
    const pgid = run.proc.pid!;
    run.proc.kill("SIGTERM");
    // `closed` resolves once every process holding the pipes, the registry included, has exited.
    // A bound against a hang, not a timing: a loaded machine takes a few seconds to stop Deno.
    await within(run.closed, 20_000, () => `the chain to end after SIGTERM; left in its group: ${groupMembers(pgid).join(", ")}\n${run.stderr()}`);
    expect(groupMembers(pgid)).toEqual([]);
    expect(await listening(port)).toBe(false);
    // Logged right before process.exit(0), after the database was closed.
    // (SIGTERM itself, should the runner ever pass it on, e.g. an `exec node ...` script.)
    expect(run.stderr()).toMatch(/INFO MCP Registry stopping: (the process that started it \(pid \d+\) has exited|SIGTERM)\n.*INFO MCP Registry stopped\n/);
    expect(run.stderr()).not.toMatch(/ERROR|ERR!/);
  }

  /**
   * The launcher ends while the registry is still starting: another process holds the new database's write
   * lock, so the migration waits. The registry must remember the parent it started with, not the one it has
   * once it listens (by then it is init's child, or a subreaper's), and stop as soon as it is up.
   */
  async function stopsWhenLauncherEndsDuringStartUp(cmd: string, args: string[]) {
    const [port, file] = [await freePort(), join(tempDir(), "r.db")];
    const lock = new Database(file);
    lock.exec("PRAGMA journal_mode=WAL");
    lock.exec("BEGIN IMMEDIATE");
    const run = start(cmd, args, { env: { MCP_PORT: String(port), DATABASE_URL: `file:${file}`, REGISTRY_SQLITE_BUSY_TIMEOUT: "60" } });
    try {
      // Logged before the database is opened: the registry's code runs and waits on the lock.
      await waitFor(() => /Development mode/.test(run.stderr()), `the first log line\n${run.stderr()}`, 30_000);
      const pgid = run.proc.pid!;
      run.proc.kill("SIGTERM");
      // Only the registry is left of the chain, still starting.
      await waitFor(() => groupMembers(pgid).length === 1, `the launchers gone: ${groupMembers(pgid).join(", ")}`);
      expect(run.stderr()).not.toMatch(READY);
    } finally {
      lock.exec("COMMIT");
      lock.close();
    }
    await within(run.closed, 20_000, () => `the registry to stop once started; left: ${groupMembers(run.proc.pid!).join(", ")}\n${run.stderr()}`);
    expect(run.stderr()).toMatch(READY);
    expect(run.stderr()).toMatch(/INFO MCP Registry stopping: the process that started it \(pid \d+\) has exited\n.*INFO MCP Registry stopped\n/);
    expect(await listening(port)).toBe(false);
  }

  it("npm start: npm signals only its `sh -c`; the registry sees its parent gone and stops", async () => {
    await stopsOnSigterm("npm", ["start", "--silent"]);
  }, 60_000);

  it("deno task start: the task runner signals only the deno shim it runs; the registry sees it gone and stops", async () => {
    await stopsOnSigterm(denoBinary(), ["task", "start"]);
  }, 60_000);

  it("npm start stopped while the registry is starting: it stops once it is up", async () => {
    await stopsWhenLauncherEndsDuringStartUp("npm", ["start", "--silent"]);
  }, 60_000);

  it("deno task start stopped while the registry is starting: it stops once it is up", async () => {
    await stopsWhenLauncherEndsDuringStartUp(denoBinary(), ["task", "start"]);
  }, 60_000);
});

describe("deploy/", () => {
  /** A unit file as sections of key → values (a key may repeat), comments and blank lines left out. */
  function parseUnit(text: string): Record<string, Record<string, string[]>> {
    const sections: Record<string, Record<string, string[]>> = {};
    let section: Record<string, string[]> | undefined;
    for (const line of text.split("\n")) {
      if (/^\s*([#;]|$)/.test(line)) continue;
      const header = /^\[(\w+)\]$/.exec(line);
      if (header) {
        section = {};
        sections[header[1]] = section;
        continue;
      }
      const entry = /^(\w+)=(.*)$/.exec(line);
      if (!entry || !section) throw new Error(`not a unit file line: ${line}`);
      section[entry[1]] = [...(section[entry[1]] ?? []), entry[2]];
    }
    return sections;
  }

  // npm start's command: node, its flags, the bundle (package.json's build --outfile).
  const outfile = /--outfile=(\S+)/.exec(pkg.scripts.build)![1];
  const startCommand = pkg.scripts.start.split(" ");

  it("the systemd unit runs npm start's command as a dedicated user, with the environment file and hardening", async () => {
    const path = join(ROOT, "deploy/mcp-registry.service");
    const text = readFileSync(path, "utf8");
    const unit = parseUnit(text);
    const service = unit.Service;
    const one = (key: string) => {
      expect(service[key], key).toHaveLength(1);
      return service[key][0];
    };
    expect(startCommand.at(-1)).toBe(outfile);
    const [node, ...args] = one("ExecStart").split(" ");
    expect(node).toMatch(/^\/.*\/node$/);
    expect(args).toEqual(startCommand.slice(1));
    expect(existsSync(join(ROOT, outfile))).toBe(true);
    expect(one("User")).toBe("mcp-registry");
    expect(one("WorkingDirectory")).toMatch(/^\/opt\//);
    expect(one("EnvironmentFile")).toBe("/etc/mcp-registry.env");
    expect(one("Restart")).toBe("on-failure");
    expect(one("NoNewPrivileges")).toBe("yes");
    expect(one("ProtectSystem")).toBe("strict");
    expect(one("PrivateTmp")).toBe("yes");
    // The database directory of the example environment file is writable, and the only place that is.
    const example = readFileSync(join(ROOT, "deploy/mcp-registry.env.example"), "utf8");
    const databaseUrl = /^DATABASE_URL=(.*)$/m.exec(example)![1];
    const database = loadConfig({ DATABASE_URL: databaseUrl }).databaseUrl.replace(/^file:/, "");
    expect(one("ReadWritePaths").split(" ")).toEqual([dirname(database)]);
    expect(one("StateDirectory")).toBe("mcp-registry");
    expect(`/var/lib/${one("StateDirectory")}`).toBe(dirname(database));
    expect(unit.Install.WantedBy).toEqual(["multi-user.target"]);
    // systemd takes a # after a value as part of the value.
    for (const values of Object.values(unit).flatMap((s) => Object.values(s))) for (const v of values) expect(v).not.toContain("#");
    // The example environment file passes the configuration's checks once its keys are filled in.
    const settings = Object.fromEntries([...example.matchAll(/^(\w+)=(.*)$/gm)].map(([, k, v]) => [k, v]));
    const config = loadConfig({ ...settings, REGISTRY_ADMIN_KEYS: "a".repeat(16), REGISTRY_AGENT_KEYS: "b".repeat(16) });
    expect(config.host).toBe("0.0.0.0");

    // systemd's own check, where systemd is installed (not on every machine; the checks above run anyway).
    const analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"].find((p) => existsSync(p));
    if (analyze) {
      // ExecStart must name an existing executable: this machine's node, if it is not in /usr/bin.
      const copy = join(tempDir(), "mcp-registry.service");
      writeFileSync(copy, existsSync(node) ? text : text.replace(`ExecStart=${node} `, `ExecStart=${process.execPath} `));
      const verify = start(analyze, ["verify", copy]);
      expect(await within(verify.closed, 20_000, "systemd-analyze verify"), verify.stderr()).toBe(0);
      expect(verify.stderr()).toBe("");
    }
  });

  it("the Dockerfile runs npm start's command as PID 1, as a non-root user, with what the bundle needs", async () => {
    const text = readFileSync(join(ROOT, "deploy/Dockerfile"), "utf8").replace(/\\\n/g, " ");
    const instructions = text
      .split("\n")
      .filter((l) => l.trim() && !l.startsWith("#"))
      .map((l) => /^(\w+)\s+(.*)$/.exec(l)!.slice(1));
    const all = (name: string) => instructions.filter(([n]) => n === name).map(([, rest]) => rest);
    const stages = all("FROM");
    expect(stages.length).toBeGreaterThanOrEqual(1);
    for (const from of stages) expect(from).toMatch(/^node:20-slim\b/);
    // Exec form: node is PID 1 and gets docker stop's SIGTERM itself.
    expect(JSON.parse(all("CMD").at(-1)!)).toEqual(startCommand);
    expect(all("EXPOSE")).toEqual([String(loadConfig({}).port)]);
    expect(all("USER")).toEqual(["node"]);
    expect(all("HEALTHCHECK").join()).toContain("/health");
    expect(all("ENV").join(" ")).toContain("MCP_HOST=0.0.0.0");
    const runs = all("RUN").join("\n");
    expect(runs).toContain("npm ci --omit=dev");
    expect(runs).toContain("npm run build");
    // The comment above MCP_HOST=0.0.0.0 says that it needs keys.
    expect(text).toMatch(/^# MCP_HOST=0\.0\.0\.0 [\s\S]*without keys: pass REGISTRY_ADMIN_KEYS and REGISTRY_AGENT_KEYS[\s\S]*\nENV MCP_HOST=0\.0\.0\.0 /m);

    // The files copied into the build stage are every local file the bundle is built from.
    const copied = all("COPY")
      .filter((c) => !c.startsWith("--from"))
      .flatMap((c) => c.split(/\s+/).slice(0, -1));
    for (const path of copied) expect(existsSync(join(ROOT, path)), path).toBe(true);
    const entry = /^esbuild (\S+)/.exec(pkg.scripts.build)![1];
    const { metafile } = await build({
      entryPoints: [join(ROOT, entry)],
      bundle: true,
      platform: "node",
      format: "esm",
      packages: "external",
      write: false,
      metafile: true,
      logLevel: "silent",
      absWorkingDir: ROOT,
    });
    const inputs = Object.keys(metafile.inputs);
    expect(inputs.length).toBeGreaterThan(10);
    for (const input of inputs)
      expect(
        copied.some((c) => input === c || input.startsWith(`${c}/`)),
        input,
      ).toBe(true);
    // The run stage has the bundle and the migrations it applies, where dist/main.mjs looks for them (../drizzle).
    expect(all("COPY")).toEqual(expect.arrayContaining([`--from=build /app/${dirname(outfile)} ./${dirname(outfile)}`, "drizzle ./drizzle"]));
  });
});
