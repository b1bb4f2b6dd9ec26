/** Entry point: reads the configuration once, starts the registry, stops it cleanly on SIGINT/SIGTERM. */
import process from "node:process";
import { ConfigError, loadConfig, readDotEnv, redactDatabaseUrl } from "./shared/config.ts";
import { createLog } from "./shared/log.ts";
import { startRegistry } from "./registry.ts";

const log = createLog();
try {
  readDotEnv(".env", process.env);
  const config = loadConfig(process.env);
  const registry = await startRegistry(config, log);
  log.info(`MCP Registry listening: MCP endpoint ${registry.url}/mcp, database ${redactDatabaseUrl(config.databaseUrl)}`);
  const stop = async () => {
    await registry.close();
    process.exit(0);
  };
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
} catch (err) {
  // A bad setting or an unsafe start is one clear line, not a stack trace.
  log.error(err instanceof ConfigError ? err.message : `Cannot start: ${(err as Error).message}`);
  process.exit(1);
}
