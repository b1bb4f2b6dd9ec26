-- GET /list_services is kept per catalogue generation too: a change of a service's endpoint or transport
-- raises it, not only of its name. Only a real change does: a refresh writes the same transport back.
DROP TRIGGER "catalogue_services" ON "services";--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "catalogue_services" AFTER INSERT OR DELETE ON "services" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "catalogue_changed"();--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "catalogue_services_update" AFTER UPDATE OF "name", "endpoint", "transport" ON "services" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
WHEN (OLD."name" IS DISTINCT FROM NEW."name" OR OLD."endpoint" IS DISTINCT FROM NEW."endpoint" OR OLD."transport" IS DISTINCT FROM NEW."transport")
EXECUTE FUNCTION "catalogue_changed"();
