CREATE TABLE `catalogue_state` (
	`id` integer PRIMARY KEY NOT NULL,
	`generation` integer DEFAULT 0 NOT NULL
);--> statement-breakpoint
INSERT INTO `catalogue_state` (`id`, `generation`) VALUES (1, 0);--> statement-breakpoint
CREATE TRIGGER `catalogue_services_insert` AFTER INSERT ON `services` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;--> statement-breakpoint
CREATE TRIGGER `catalogue_services_delete` AFTER DELETE ON `services` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;--> statement-breakpoint
CREATE TRIGGER `catalogue_services_update` AFTER UPDATE OF `name` ON `services` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;--> statement-breakpoint
CREATE TRIGGER `catalogue_tools_insert` AFTER INSERT ON `tools` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;--> statement-breakpoint
CREATE TRIGGER `catalogue_tools_delete` AFTER DELETE ON `tools` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;--> statement-breakpoint
CREATE TRIGGER `catalogue_tools_update` AFTER UPDATE ON `tools` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;--> statement-breakpoint
CREATE TRIGGER `catalogue_roles_insert` AFTER INSERT ON `roles` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;--> statement-breakpoint
CREATE TRIGGER `catalogue_roles_delete` AFTER DELETE ON `roles` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;--> statement-breakpoint
CREATE TRIGGER `catalogue_roles_update` AFTER UPDATE OF `name` ON `roles` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;--> statement-breakpoint
CREATE TRIGGER `catalogue_tool_roles_insert` AFTER INSERT ON `tool_roles` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;--> statement-breakpoint
CREATE TRIGGER `catalogue_tool_roles_delete` AFTER DELETE ON `tool_roles` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;--> statement-breakpoint
CREATE TRIGGER `catalogue_tool_roles_update` AFTER UPDATE ON `tool_roles` BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;
