ALTER TABLE `services` ADD `next_refresh_at` text;--> statement-breakpoint
ALTER TABLE `services` ADD `refresh_lease_until` text;--> statement-breakpoint
ALTER TABLE `services` ADD `catalogue_version` text DEFAULT '' NOT NULL;