/**
 * Entry point for desktop MCP clients that speak only stdio, on the configured database, no HTTP:
 * `npm run stdio` serves the registry's tools as the local administrator; `npm run gateway -- --user <id>`
 * serves the gateway as that user (the tools of the user's role, each call with the user's own credential).
 */
import process from "node:process";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { AjvJsonSchemaValidator } from "@modelcontextprotocol/sdk/validation/ajv";
import { closeSessions } from "./features/gateway/downstream.ts";
import { gatewayRefused, gatewayServer } from "./features/gateway/gateway.ts";
import { openContext, registryMcp } from "./registry.ts";
import { type Command, type CommandLine, onLauncherGone, parseCommandLine, readDotEnvFile } from "./shared/cli.ts";
import { ConfigError, loadConfig, redactDatabaseUrl } from "./shared/config.ts";
import type { Caller, Ctx } from "./shared/context.ts";
import { createLog, type Log, logFormatOf } from "./shared/log.ts";
import { connectGuarded } from "./shared/mcp.ts";
import { UserId } from "./shared/names.ts";
import { validate } from "./shared/validate.ts";

// stdout carries protocol messages only: whatever a library prints with console.log goes to stderr instead.
console.log = console.info = console.debug = console.error;

const USAGE = "Usage: stdio.ts [--gateway --user <user_id>]";
const STDIO: Command = {
  name: "stdio.ts",
  usage: [
    "npm run stdio [-- --help]",
    "npm run gateway -- --user <user_id>",
    "node --import tsx stdio.ts [--gateway --user <user_id>]",
    "npx deno task stdio | npx deno task gateway --user <user_id>",
  ],
  about: `Serves MCP on stdin/stdout for a desktop client that starts it as a local process, on the database
DATABASE_URL; nothing listens on HTTP. Without --gateway: the registry's own tools, as the local
administrator. With --gateway --user <user_id>: the gateway as that user (the tools of the user's role, each
call sent with the user's own stored credential). stdout carries protocol messages only; logs go to stderr.
Stops when stdin ends, on SIGINT or SIGTERM, or when the npm or deno task process that started it is gone.`,
  flags: {
    gateway: { type: "boolean", help: "Serve the gateway for one user instead of the registry's tools (needs --user)" },
    user: { type: "string", value: "<user_id>", help: "The user the gateway serves" },
  },
};

/** The server this process serves, for whom, and what to do with a refused message. */
function serving(ctx: Ctx, gatewayUser: string | undefined) {
  const validator = new AjvJsonSchemaValidator();
  if (gatewayUser === undefined) {
    // The client started this process on the operator's machine: it is the local administrator.
    const caller: Caller = { principal: "admin", label: "stdio" };
    return { what: "the registry's tools", server: registryMcp.server(ctx, caller, validator), refused: (a: string, r: string) => registryMcp.refused(ctx, caller, a, r) };
  }
  const caller: Caller = { principal: "user", label: `stdio-gateway:${gatewayUser}`, userId: gatewayUser };
  return {
    what: `the gateway for user "${gatewayUser}"`,
    server: gatewayServer(ctx, caller, validator, () => false),
    refused: gatewayRefused(ctx, caller),
  };
}

const cli = parseCommandLine(STDIO);
if (cli) {
  // .env first, so that a LOG_FORMAT set there applies to every line, the first one included.
  const dotEnvError = readDotEnvFile(process.env);
  const log = createLog(undefined, logFormatOf(process.env));
  try {
    if (dotEnvError) throw dotEnvError;
    await serve(cli.values, log);
  } catch (err) {
    // A bad setting or argument is one clear line on stderr, not a stack trace.
    log.error(err instanceof ConfigError ? err.message : `Cannot start: ${(err as Error).message}`);
    process.exit(1);
  }
}

/** Opens the database and serves on stdio until stdin ends or a signal (or the launcher's end) stops it. */
async function serve(values: CommandLine["values"], log: Log) {
  const user = typeof values.user === "string" ? values.user : undefined;
  if (values.gateway && user === undefined) throw new ConfigError(`--gateway needs --user <user_id>. ${USAGE}`);
  if (user !== undefined && !values.gateway) throw new ConfigError(`--user goes with --gateway. ${USAGE}`);
  const gatewayUser = user === undefined ? undefined : validate(UserId, user, "serve the gateway for --user");
  const config = loadConfig(process.env);
  const { ctx, close } = await openContext(config, log);
  const { what, server, refused } = serving(ctx, gatewayUser);
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      await server.close().catch(() => {});
      await closeSessions(ctx);
      await close();
      log.info("MCP Registry on stdio stopped");
      process.exit(0);
    })();
    return stopping;
  };
  process.stdin.once("end", stop);
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  onLauncherGone(process.env, stop);
  await connectGuarded(server, new StdioServerTransport(), refused);
  log.info(`MCP Registry serving ${what} on stdio, database ${redactDatabaseUrl(config.databaseUrl)}`);
}
