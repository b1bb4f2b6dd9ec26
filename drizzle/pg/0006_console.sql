CREATE TABLE "console_sessions" (
	"digest" text PRIMARY KEY NOT NULL,
	"label" text NOT NULL,
	"csrf" text NOT NULL,
	"flash" text,
	"created_at" text DEFAULT to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') NOT NULL,
	"expires_at" text NOT NULL
);
--> statement-breakpoint
CREATE INDEX "console_sessions_expires" ON "console_sessions" USING btree ("expires_at");