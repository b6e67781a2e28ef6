-- The transactional outbox: an event of a state change is written to `gateway_events` in
-- the change's own transaction, with a marker here. The marker goes once the event is
-- published; a marker left behind (the node died between commit and publish, or the bus
-- was down) is taken by any node's relay, which publishes the event late rather than never.
CREATE TABLE event_outbox (
    event_id BIGINT PRIMARY KEY
);
