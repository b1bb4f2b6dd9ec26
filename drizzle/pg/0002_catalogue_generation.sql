CREATE TABLE "catalogue_state" (
	"id" integer PRIMARY KEY NOT NULL,
	"generation" bigint DEFAULT 0 NOT NULL
);--> statement-breakpoint
INSERT INTO "catalogue_state" ("id", "generation") VALUES (1, 0);--> statement-breakpoint
-- Run at commit (deferred), once per transaction: the row lock on catalogue_state is the last lock a change
-- takes, so it orders commits without adding a deadlock, and bulk writes raise the number once.
CREATE FUNCTION "catalogue_changed"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF current_setting('registry.catalogue_changed', true) IS DISTINCT FROM 'yes' THEN
    UPDATE "catalogue_state" SET "generation" = "generation" + 1 WHERE "id" = 1;
    PERFORM set_config('registry.catalogue_changed', 'yes', true);
  END IF;
  RETURN NULL;
END $$;--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "catalogue_services" AFTER INSERT OR DELETE OR UPDATE OF "name" ON "services" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "catalogue_changed"();--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "catalogue_tools" AFTER INSERT OR DELETE OR UPDATE ON "tools" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "catalogue_changed"();--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "catalogue_roles" AFTER INSERT OR DELETE OR UPDATE OF "name" ON "roles" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "catalogue_changed"();--> statement-breakpoint
CREATE CONSTRAINT TRIGGER "catalogue_tool_roles" AFTER INSERT OR DELETE OR UPDATE ON "tool_roles" DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "catalogue_changed"();
