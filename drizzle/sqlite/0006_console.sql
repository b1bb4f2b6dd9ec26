CREATE TABLE `console_sessions` (
	`digest` text PRIMARY KEY NOT NULL,
	`label` text NOT NULL,
	`csrf` text NOT NULL,
	`flash` text,
	`created_at` text DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) NOT NULL,
	`expires_at` text NOT NULL
);
--> statement-breakpoint
CREATE INDEX `console_sessions_expires` ON `console_sessions` (`expires_at`);