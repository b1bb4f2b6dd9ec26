ALTER TABLE "services" ADD COLUMN "next_refresh_at" text;--> statement-breakpoint
ALTER TABLE "services" ADD COLUMN "refresh_lease_until" text;--> statement-breakpoint
ALTER TABLE "services" ADD COLUMN "catalogue_version" text DEFAULT '' NOT NULL;