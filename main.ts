/**
 * Entry point: reads the configuration once, starts the registry, stops it cleanly on SIGINT/SIGTERM or
 * when the npm or deno task process that started it is gone. `--help` lists the settings.
 */
import process from "node:process";
import { type Command, onLauncherGone, parseCommandLine, readDotEnvFile } from "./shared/cli.ts";
import { ConfigError, loadConfig, redactDatabaseUrl } from "./shared/config.ts";
import { createLog, logFormatOf } from "./shared/log.ts";
import { startRegistry } from "./registry.ts";

const MAIN: Command = {
  name: "main.ts",
  usage: ["node dist/main.mjs [--help]", "npm start [-- --help]", "npx deno task start [--help]"],
  about: `Starts the MCP Registry: one HTTP server on MCP_HOST:MCP_PORT (default 127.0.0.1:8000) serving the MCP
endpoint /mcp, the per-user gateway /gateway/mcp, the registry API /v0.1, the web console /console, the
agents' HTTP endpoints, /health and /ready, on the database DATABASE_URL (migrated at start-up). Logs go to
stderr (LOG_FORMAT=json: one JSON object per line). SIGINT or SIGTERM stops it cleanly with exit status 0;
so does the end of the npm or deno task process that started it.`,
};

if (parseCommandLine(MAIN)) {
  // .env first, so that a LOG_FORMAT set there applies to every line, the first one included.
  const dotEnvError = readDotEnvFile(process.env);
  const log = createLog(undefined, logFormatOf(process.env));
  try {
    if (dotEnvError) throw dotEnvError;
    const config = loadConfig(process.env);
    const registry = await startRegistry(config, log);
    log.info(`MCP Registry listening: MCP endpoint ${registry.url}/mcp, database ${redactDatabaseUrl(config.databaseUrl)}`);
    let stopping = false;
    const stop = async (why: string) => {
      if (stopping) return;
      stopping = true;
      log.info(`MCP Registry stopping: ${why}`);
      try {
        await registry.close();
      } catch (err) {
        log.error(`Stopping failed: ${(err as Error).message}`);
        process.exit(1);
      }
      log.info("MCP Registry stopped");
      process.exit(0);
    };
    process.once("SIGINT", () => stop("SIGINT"));
    process.once("SIGTERM", () => stop("SIGTERM"));
    onLauncherGone(process.env, (launcher) => stop(`${launcher} has exited`));
  } catch (err) {
    // A bad setting or an unsafe start is one clear line, not a stack trace.
    log.error(err instanceof ConfigError ? err.message : `Cannot start: ${(err as Error).message}`);
    process.exit(1);
  }
}
