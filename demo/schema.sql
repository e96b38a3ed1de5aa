-- The demo schema: a multi-tenant application with shards, users, ACLs and sessions.
CREATE TABLE IF NOT EXISTS shards (
    tenant_id text NOT NULL,
    id        int  NOT NULL,
    title     text,
    payload   text,
    PRIMARY KEY (tenant_id, id)
);
-- FULL: an UPDATE carries the old row, so a row moving tenant invalidates both places
ALTER TABLE shards REPLICA IDENTITY FULL;
CREATE TABLE IF NOT EXISTS users (
    tenant_id text NOT NULL,
    id        int  PRIMARY KEY,
    name      text
);
CREATE TABLE IF NOT EXISTS acl (
    tenant_id text NOT NULL,
    user_id   int  NOT NULL,
    shard_id  int  NOT NULL,
    PRIMARY KEY (tenant_id, user_id, shard_id)
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash text PRIMARY KEY,
    user_id    int
);
