/** `npm run import -- <old DATABASE_URL>`: imports the predecessor's SQLite database into this registry's database. */
import process from "node:process";
import { formatImportReport, importLegacy, legacyDatabasePath } from "./features/import/import.ts";
import { openContext } from "./registry.ts";
import { type Command, parseCommandLine, readDotEnvFile } from "./shared/cli.ts";
import { ConfigError, loadConfig } from "./shared/config.ts";
import { AppError } from "./shared/errors.ts";
import { createLog, logFormatOf } from "./shared/log.ts";

const IMPORT: Command = {
  name: "import.ts",
  usage: ["npm run import -- <old DATABASE_URL>", "npx deno task import <old DATABASE_URL>"],
  about: `Imports the predecessor's (the Python registry's) SQLite database into this registry's database,
DATABASE_URL (SQLite or PostgreSQL): services, tools with their ids, roles with their prompts, users, and
tokens (encrypted on the way in). It reads a copy: the old file is never changed. Idempotent: a second run
imports nothing. Prints what it imported, and what it skipped and why, on stdout.`,
  args: [{ name: "<old DATABASE_URL>", help: "The predecessor's database: sqlite:///./dev.db, sqlite+aiosqlite:///./dev.db, file:dev.db or a path" }],
};

const cli = parseCommandLine(IMPORT);
if (cli) {
  // .env first, so that a LOG_FORMAT set there applies to every line.
  const dotEnvError = readDotEnvFile(process.env);
  const log = createLog(undefined, logFormatOf(process.env));
  const [source] = cli.positionals;
  if (!source) {
    log.error("Usage: npm run import -- <the predecessor's DATABASE_URL>, e.g. sqlite:///./dev.db (writes into DATABASE_URL; --help for more)");
    process.exit(1);
  }
  try {
    if (dotEnvError) throw dotEnvError;
    const config = loadConfig(process.env);
    // Refuse a source we cannot read before anything is opened or written.
    legacyDatabasePath(source);
    const { ctx, close } = await openContext(config, log);
    try {
      console.log(formatImportReport(await importLegacy(ctx, source)));
    } finally {
      await close();
    }
  } catch (err) {
    log.error(err instanceof ConfigError || err instanceof AppError ? err.message : `Cannot import: ${(err as Error).message}`);
    process.exit(1);
  }
}
