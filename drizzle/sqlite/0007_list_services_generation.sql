-- GET /list_services is kept per catalogue generation too: a change of a service's endpoint or transport
-- raises it, not only of its name. Only a real change does: a refresh writes the same transport back.
DROP TRIGGER `catalogue_services_update`;--> statement-breakpoint
CREATE TRIGGER `catalogue_services_update` AFTER UPDATE OF `name`, `endpoint`, `transport` ON `services`
WHEN OLD.`name` IS NOT NEW.`name` OR OLD.`endpoint` IS NOT NEW.`endpoint` OR OLD.`transport` IS NOT NEW.`transport`
BEGIN UPDATE `catalogue_state` SET `generation` = `generation` + 1 WHERE `id` = 1; END;
