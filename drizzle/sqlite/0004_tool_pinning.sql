CREATE TABLE `tool_changes` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`tool_id` integer NOT NULL,
	`status` text NOT NULL,
	`before` text NOT NULL,
	`after` text NOT NULL,
	`digest` text NOT NULL,
	`flags` text NOT NULL,
	`seen_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL,
	`decided_at` text,
	`decided_by` text,
	FOREIGN KEY (`tool_id`) REFERENCES `tools`(`id`) ON UPDATE no action ON DELETE cascade
);
--> statement-breakpoint
CREATE INDEX `tool_changes_tool` ON `tool_changes` (`tool_id`,`status`);--> statement-breakpoint
ALTER TABLE `tools` ADD `digest` text;--> statement-breakpoint
ALTER TABLE `tools` ADD `held` integer DEFAULT false NOT NULL;