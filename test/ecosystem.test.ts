/** The registry against the MCP ecosystem's own tools — the conformance suite and the Inspector CLI. */
import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ROOT, runToExit, type Spawned, startEverything, startTestRegistry, type TestRegistry, tempDir } from "./helpers.ts";

const DENO = join(ROOT, "node_modules/.bin/deno");
const CONFORMANCE = join(ROOT, "node_modules/@modelcontextprotocol/conformance/dist/index.js");
const BASELINE = join(ROOT, "test/conformance-baseline.yml");

/** The baseline's scenario names, each with the reason written after it. */
function readBaseline(): { scenario: string; reason: string }[] {
  const entries = readFileSync(BASELINE, "utf8")
    .split("\n")
    .filter((l) => /^\s+-\s/.test(l));
  return entries.map((line) => {
    const m = /^\s+-\s+([\w-]+)\s+#\s*(\S.*)$/.exec(line);
    if (!m) throw new Error(`Baseline entry without a one-line reason: ${line.trim()}`);
    return { scenario: m[1], reason: m[2] };
  });
}

/** Scenario name -> failed, from the CLI's result folders (a warning counts as a failure, as the CLI counts it). */
function readResults(dir: string): Map<string, boolean> {
  const results = new Map<string, boolean>();
  for (const name of readdirSync(dir)) {
    const scenario = /^server-(.+)-\d{4}-\d\d-\d\dT[\d-]+Z$/.exec(name)?.[1];
    if (!scenario || !existsSync(join(dir, name, "checks.json"))) continue;
    const checks = JSON.parse(readFileSync(join(dir, name, "checks.json"), "utf8")) as { status: string }[];
    results.set(
      scenario,
      checks.some((c) => c.status === "FAILURE" || c.status === "WARNING"),
    );
  }
  return results;
}

describe("MCP conformance suite (server scenarios)", () => {
  let reg: TestRegistry;
  beforeAll(async () => {
    reg = await startTestRegistry();
  });
  afterAll(async () => reg?.stop());

  it("passes every scenario outside the baseline, and fails every scenario in it", async () => {
    const baseline = readBaseline();
    expect(baseline.length).toBeGreaterThan(0);
    const out = tempDir();
    // The CLI needs a newer Node than 20; it runs under the Deno the project already ships.
    const { code, output } = await runToExit(DENO, ["run", "-A", CONFORMANCE, "server", "--url", `${reg.url}/mcp`, "--expected-failures", BASELINE, "-o", out], {
      timeoutMs: 120_000,
    });
    const results = readResults(out);
    const failing = [...results]
      .filter(([, failed]) => failed)
      .map(([s]) => s)
      .sort();
    // Unexpected failures and stale baseline entries both show up in this one comparison.
    expect(failing, output).toEqual(baseline.map((b) => b.scenario).sort());
    expect(code, output).toBe(0);
    const passing = [...results].filter(([, failed]) => !failed).map(([s]) => s);
    for (const s of ["server-initialize", "ping", "logging-set-level", "tools-list", "tools-call-simple-text", "tools-call-error", "dns-rebinding-protection"]) {
      expect(passing, output).toContain(s);
    }
  }, 150_000);
});

const ADMIN = "admin-key-ecosystem-0123456789";
const exec = promisify(execFile);

describe("MCP Inspector CLI", () => {
  let reg: TestRegistry;
  let everything: Spawned;
  beforeAll(async () => {
    [reg, everything] = await Promise.all([startTestRegistry({ REGISTRY_ADMIN_KEYS: ADMIN }), startEverything()]);
  });
  afterAll(async () => {
    await reg?.stop();
    await everything?.stop();
  });

  /** Runs `mcp-inspector-cli --cli` against the registry with the admin key and returns its JSON output. */
  async function inspector(...args: string[]): Promise<Record<string, unknown>> {
    const bin = join(ROOT, "node_modules/@modelcontextprotocol/inspector-cli/build/cli.js");
    // inspector-cli 1.0.3 finds its own package.json relative to the working directory: run it from its folder.
    const { stdout } = await exec(process.execPath, [bin, "--cli", `${reg.url}/mcp`, "--transport", "http", "--header", `Authorization: Bearer ${ADMIN}`, ...args], {
      cwd: join(ROOT, "node_modules/@modelcontextprotocol/inspector-cli/build"),
      timeout: 30_000,
    });
    return JSON.parse(stdout);
  }

  it("lists the tools, adds server-everything with tools/call, and lists it", async () => {
    const listed = (await inspector("--method", "tools/list")) as { tools: { name: string; annotations: object }[] };
    const names = listed.tools.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(["add_service", "list_services", "get_tools", "remove_service"]));

    const added = await inspector(
      "--method",
      "tools/call",
      "--tool-name",
      "add_service",
      "--tool-arg",
      "service_name=everything",
      "--tool-arg",
      `endpoint=${everything.url}`,
      "--tool-arg",
      "description=Reference server",
    );
    expect(added.isError).toBeFalsy();
    expect(added.content).toEqual([{ type: "text", text: expect.stringMatching(/^Service "everything" added with \d+ tools\.$/) }]);

    const list = await inspector("--method", "tools/call", "--tool-name", "list_services");
    expect(list.structuredContent).toEqual({ services: [{ service_name: "everything", endpoint: everything.url, description: "Reference server" }] });
    expect(JSON.parse((list.content as { text: string }[])[0].text)).toEqual([{ service_name: "everything", endpoint: everything.url, description: "Reference server" }]);
  }, 60_000);

  it("is refused without the key", async () => {
    const bin = join(ROOT, "node_modules/@modelcontextprotocol/inspector-cli/build/cli.js");
    const { code, output } = await runToExit(process.execPath, [bin, "--cli", `${reg.url}/mcp`, "--transport", "http", "--method", "tools/list"], {
      cwd: join(ROOT, "node_modules/@modelcontextprotocol/inspector-cli/build"),
    });
    expect(code).not.toBe(0);
    expect(output).toMatch(/401|Authentication required/);
  });
});
