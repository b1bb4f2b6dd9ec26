/**
 * The registry's CPU per discovery, apart from everything else: discovers N of bench/downstream.ts's
 * 10-tool services (8 at a time, after 100 to warm up) in this process, with the downstream in another, and
 * prints the wall time and this process's CPU per discovery. For A/B runs of features/services/discovery.ts:
 * `node --import tsx bench/discovery.ts [N]` on each revision, on the same machine, one after the other.
 */
import { spawn } from "node:child_process";
import process from "node:process";
import { discoverService } from "../features/services/discovery.ts";

const N = Number(process.argv[2] ?? 1000);
const AT_ONCE = 8;
const downstream = spawn(process.execPath, ["--import", "tsx", "bench/downstream.ts"], { stdio: ["ignore", "ignore", "pipe"] });
const port = await new Promise<number>((resolve) =>
  downstream.stderr!.on("data", (d: Buffer) => {
    const listening = /listening on (\d+)/.exec(String(d));
    if (listening) resolve(Number(listening[1]));
  }),
);

// Discovers services first .. first+count-1, AT_ONCE at a time; each must list its 10 tools.
async function discover(first: number, count: number): Promise<void> {
  let next = first;
  await Promise.all(
    Array.from({ length: AT_ONCE }, async () => {
      while (next < first + count) {
        const found = await discoverService(`http://127.0.0.1:${port}/s/${next++}/mcp`, { timeoutMs: 10_000, wantDescription: false });
        if (found.tools.length !== 10) throw new Error(`expected 10 tools, got ${found.tools.length}`);
      }
    }),
  );
}

try {
  await discover(0, 100);
  const cpu = process.cpuUsage();
  const start = performance.now();
  await discover(1000, N);
  const used = process.cpuUsage(cpu);
  console.log(`${N} discoveries of a 10-tool service: ${((performance.now() - start) / 1000).toFixed(2)} s, ${Math.round((used.user + used.system) / N)} µs of CPU each`);
} finally {
  downstream.kill();
}
