CREATE TABLE `connect_links` (
	`digest` text PRIMARY KEY NOT NULL,
	`user_id` integer NOT NULL,
	`service_id` integer NOT NULL,
	`expires_at` text NOT NULL,
	`spent_by` text,
	`created_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade,
	FOREIGN KEY (`service_id`) REFERENCES `services`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `connect_links_user_service` ON `connect_links` (`user_id`,`service_id`);--> statement-breakpoint
CREATE INDEX `connect_links_expires` ON `connect_links` (`expires_at`);--> statement-breakpoint
CREATE TABLE `user_keys` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`user_id` integer NOT NULL,
	`label` text NOT NULL,
	`digest` text NOT NULL,
	`created_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL,
	`last_used_at` text,
	FOREIGN KEY (`user_id`) REFERENCES `users`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE UNIQUE INDEX `user_keys_digest_unique` ON `user_keys` (`digest`);--> statement-breakpoint
CREATE UNIQUE INDEX `user_keys_user_label` ON `user_keys` (`user_id`,`label`);