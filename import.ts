/** `npm run import -- <old DATABASE_URL>`: imports the predecessor's SQLite database into this registry's database. */
import process from "node:process";
import { formatImportReport, importLegacy, legacyDatabasePath } from "./features/import/import.ts";
import { openContext } from "./registry.ts";
import { ConfigError, loadConfig, readDotEnv } from "./shared/config.ts";
import { AppError } from "./shared/errors.ts";
import { createLog } from "./shared/log.ts";

const log = createLog();
const source = process.argv[2];
if (!source) {
  log.error("Usage: npm run import -- <the predecessor's DATABASE_URL>, e.g. sqlite:///./dev.db (writes into DATABASE_URL)");
  process.exit(1);
}
try {
  readDotEnv(".env", process.env);
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
