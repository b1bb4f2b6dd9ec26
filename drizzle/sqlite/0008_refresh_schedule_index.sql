-- The background refresher reads due and unscheduled services by next_refresh_at every round (issue 21):
-- without an index each round scanned the whole table twice.
CREATE INDEX `services_next_refresh` ON `services` (`next_refresh_at`);
