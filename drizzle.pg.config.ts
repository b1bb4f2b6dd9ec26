import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./shared/db/schema.pg.ts",
  out: "./drizzle/pg",
});
