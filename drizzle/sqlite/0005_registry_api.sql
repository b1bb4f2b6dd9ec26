ALTER TABLE `services` ADD `server_version` text;--> statement-breakpoint
ALTER TABLE `services` ADD `updated_at` text;