ALTER TABLE "services" ADD COLUMN "server_version" text;--> statement-breakpoint
ALTER TABLE "services" ADD COLUMN "updated_at" text;