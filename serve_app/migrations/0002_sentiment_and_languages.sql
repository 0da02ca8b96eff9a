-- A second task (3-class sentiment) beside emotion, and the language of every post.
-- Existing rows are emotion predictions: the new `task` columns default to 'emotion'.

ALTER TABLE posts ADD COLUMN IF NOT EXISTS lang text;                -- ISO 639-1, 'und' if unsure
ALTER TABLE posts ADD COLUMN IF NOT EXISTS lang_confidence real;

ALTER TABLE queries ADD COLUMN IF NOT EXISTS tasks text[] NOT NULL DEFAULT '{emotion}';
ALTER TABLE queries ADD COLUMN IF NOT EXISTS model_versions jsonb;    -- {"emotion": ..., "sentiment": ...}
ALTER TABLE queries ADD COLUMN IF NOT EXISTS n_scored integer;        -- posts the models judged
ALTER TABLE queries ADD COLUMN IF NOT EXISTS n_strongly_negative integer;
ALTER TABLE queries ADD COLUMN IF NOT EXISTS languages jsonb;         -- {"en": 240, "es": 6, "und": 4}

ALTER TABLE predictions ADD COLUMN IF NOT EXISTS task text NOT NULL DEFAULT 'emotion';
ALTER TABLE predictions DROP CONSTRAINT IF EXISTS predictions_pkey;
ALTER TABLE predictions ADD PRIMARY KEY (query_id, source, post_id, task);
CREATE INDEX IF NOT EXISTS predictions_task_label ON predictions (task, label);

ALTER TABLE query_aggregates ADD COLUMN IF NOT EXISTS task text NOT NULL DEFAULT 'emotion';
ALTER TABLE query_aggregates DROP CONSTRAINT IF EXISTS query_aggregates_pkey;
ALTER TABLE query_aggregates ADD PRIMARY KEY (query_id, task, label);

-- The emotion views read emotion predictions only (they predate the task column).
CREATE OR REPLACE VIEW v_emotion_daily AS
WITH latest AS (
    SELECT DISTINCT ON (q.keyword_norm, (q.created_at AT TIME ZONE 'UTC')::date, p.source, p.post_id)
           q.keyword_norm AS keyword,
           (q.created_at AT TIME ZONE 'UTC')::date AS day,
           p.label
    FROM predictions p
    JOIN queries q USING (query_id)
    WHERE p.task = 'emotion'
    ORDER BY q.keyword_norm, (q.created_at AT TIME ZONE 'UTC')::date, p.source, p.post_id, q.created_at DESC
)
SELECT keyword, day, label,
       count(*) AS posts,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY keyword, day), 2) AS pct
FROM latest
GROUP BY keyword, day, label;

-- Sentiment share per keyword per day, same counting rule as v_emotion_daily.
CREATE OR REPLACE VIEW v_sentiment_daily AS
WITH latest AS (
    SELECT DISTINCT ON (q.keyword_norm, (q.created_at AT TIME ZONE 'UTC')::date, p.source, p.post_id)
           q.keyword_norm AS keyword,
           (q.created_at AT TIME ZONE 'UTC')::date AS day,
           p.label
    FROM predictions p
    JOIN queries q USING (query_id)
    WHERE p.task = 'sentiment'
    ORDER BY q.keyword_norm, (q.created_at AT TIME ZONE 'UTC')::date, p.source, p.post_id, q.created_at DESC
)
SELECT keyword, day, label,
       count(*) AS posts,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY keyword, day), 2) AS pct
FROM latest
GROUP BY keyword, day, label;

-- Confidence against the predicted label, now per task (a new column at the end).
CREATE OR REPLACE VIEW v_confidence_by_label AS
SELECT p.label, p.confidence, p.model_version, q.keyword_norm AS keyword, q.created_at, p.source, p.post_id,
       p.task
FROM predictions p
JOIN queries q USING (query_id);

-- Posts per detected language and keyword, summed over analyses: how much of the
-- conversation the models cannot judge.
CREATE OR REPLACE VIEW v_languages AS
SELECT l.key AS lang, q.keyword_norm AS keyword, sum(l.value::int) AS posts, count(*) AS queries
FROM queries q, jsonb_each_text(coalesce(q.languages, '{}'::jsonb)) AS l
GROUP BY 1, 2;
