-- Durable history of analyses: queries, posts, predictions and per-query aggregates.
-- Every primary key is a natural key, so replaying a record is a no-op (ON CONFLICT DO NOTHING).

CREATE TABLE IF NOT EXISTS queries (
    query_id       text PRIMARY KEY,            -- sha256 of the record, stable across retries
    keyword        text        NOT NULL,        -- as asked
    keyword_norm   text        NOT NULL,        -- lower-case, single spaces: what BI groups by
    source         text        NOT NULL,        -- reddit | jsonl
    post_limit     integer     NOT NULL,
    lang           text        NOT NULL DEFAULT 'en',
    model_version  text        NOT NULL,
    created_at     timestamptz NOT NULL,        -- when the analysis ran
    n_posts        integer     NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS queries_keyword_time ON queries (keyword_norm, created_at);
CREATE INDEX IF NOT EXISTS queries_time ON queries (created_at);

CREATE TABLE IF NOT EXISTS posts (
    source       text NOT NULL,
    post_id      text NOT NULL,
    title        text NOT NULL,
    body         text NOT NULL,
    subreddit    text NOT NULL,
    created_utc  timestamptz,
    score        integer,
    url          text,
    PRIMARY KEY (source, post_id)
);

CREATE TABLE IF NOT EXISTS predictions (
    query_id       text NOT NULL REFERENCES queries (query_id) ON DELETE CASCADE,
    source         text NOT NULL,
    post_id        text NOT NULL,
    model_version  text NOT NULL,
    label          text NOT NULL,
    confidence     real NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    scores         jsonb NOT NULL,
    PRIMARY KEY (query_id, source, post_id),
    FOREIGN KEY (source, post_id) REFERENCES posts (source, post_id)
);
CREATE INDEX IF NOT EXISTS predictions_label ON predictions (label);

CREATE TABLE IF NOT EXISTS query_aggregates (
    query_id   text    NOT NULL REFERENCES queries (query_id) ON DELETE CASCADE,
    label      text    NOT NULL,
    pct        real    NOT NULL,
    n          integer NOT NULL,
    avg_score  real    NOT NULL,
    PRIMARY KEY (query_id, label)
);

-- Emotion share per keyword per day (stacked bars across keywords, trend lines). A post
-- seen by several analyses of the same keyword on the same day counts once (its latest label).
CREATE OR REPLACE VIEW v_emotion_daily AS
WITH latest AS (
    SELECT DISTINCT ON (q.keyword_norm, (q.created_at AT TIME ZONE 'UTC')::date, p.source, p.post_id)
           q.keyword_norm AS keyword,
           (q.created_at AT TIME ZONE 'UTC')::date AS day,
           p.label
    FROM predictions p
    JOIN queries q USING (query_id)
    ORDER BY q.keyword_norm, (q.created_at AT TIME ZONE 'UTC')::date, p.source, p.post_id, q.created_at DESC
)
SELECT keyword, day, label,
       count(*) AS posts,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY keyword, day), 2) AS pct
FROM latest
GROUP BY keyword, day, label;

-- One row per prediction: confidence against the predicted label (model uncertainty scatter).
CREATE OR REPLACE VIEW v_confidence_by_label AS
SELECT p.label, p.confidence, p.model_version, q.keyword_norm AS keyword, q.created_at, p.source, p.post_id
FROM predictions p
JOIN queries q USING (query_id);

-- Query counts per keyword over the last hour, day and week.
CREATE OR REPLACE VIEW v_hot_keywords AS
SELECT keyword_norm AS keyword,
       count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS queries_1h,
       count(*) FILTER (WHERE created_at > now() - interval '1 day')  AS queries_24h,
       count(*) FILTER (WHERE created_at > now() - interval '7 days') AS queries_7d,
       max(created_at) AS last_query
FROM queries
GROUP BY keyword_norm;
