-- Shadow pairs and promotions (issue 30): a candidate version scores a sampled share of the
-- posts the live version scores; each pair is kept so `GET /models/compare` and the
-- promotion gate judge the two versions on the same posts. A post scored again by the same
-- two versions (a later analysis) keeps its first pair.

CREATE TABLE IF NOT EXISTS shadow_pairs (
    id                 bigserial PRIMARY KEY,
    at                 timestamptz NOT NULL DEFAULT now(),
    source             text    NOT NULL,
    post_id            text    NOT NULL,
    task               text    NOT NULL,
    live_version       text    NOT NULL,
    candidate_version  text    NOT NULL,
    live_label         text    NOT NULL,
    candidate_label    text    NOT NULL,
    live_probs         real[]  NOT NULL,       -- in the head's label order
    candidate_probs    real[]  NOT NULL,
    live_ms            real    NOT NULL,       -- model time per post in its batch
    candidate_ms       real    NOT NULL,
    UNIQUE (source, post_id, task, live_version, candidate_version)
);
CREATE INDEX IF NOT EXISTS shadow_pairs_versions ON shadow_pairs (task, live_version, candidate_version);

-- Every promotion and rollback: who, what, when, and the gate's figures.
CREATE TABLE IF NOT EXISTS model_promotions (
    id             bigserial PRIMARY KEY,
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text    NOT NULL,
    action         text    NOT NULL,           -- promote | rollback
    from_versions  jsonb   NOT NULL,           -- {task: version}; {} = the app's model_dir
    to_versions    jsonb   NOT NULL,
    gate           jsonb   NOT NULL,
    deployed       boolean NOT NULL            -- false: --config-only (serve_config.yaml edited)
);
