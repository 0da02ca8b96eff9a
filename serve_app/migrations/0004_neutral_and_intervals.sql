-- "No clear emotion": the emotion task gains the label `neutral`, shares become estimates
-- with 95 % intervals, and each share is also given among the posts that carry an emotion.
-- Old rows stay readable: the new columns are NULL for them, and their six-label shares
-- are already shares among emotional posts (there was no neutral outcome).

ALTER TABLE query_aggregates ADD COLUMN IF NOT EXISTS pct_low real;       -- 95 % interval, %
ALTER TABLE query_aggregates ADD COLUMN IF NOT EXISTS pct_high real;
ALTER TABLE query_aggregates ADD COLUMN IF NOT EXISTS pct_among real;     -- among posts with an emotion
ALTER TABLE query_aggregates ADD COLUMN IF NOT EXISTS pct_among_low real;
ALTER TABLE query_aggregates ADD COLUMN IF NOT EXISTS pct_among_high real;
-- How each task's shares were counted: {"emotion": "pacc", "sentiment": "pcc"} (NULL: cc).
ALTER TABLE queries ADD COLUMN IF NOT EXISTS breakdown_methods jsonb;

-- v_emotion_daily gains, at the end, each emotion's share among the posts that carry one
-- (NULL on the neutral row); for days before neutral existed it equals pct.
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
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY keyword, day), 2) AS pct,
       CASE WHEN label = 'neutral' THEN NULL
            ELSE round(100.0 * count(*) / NULLIF(sum(count(*)) FILTER (WHERE label <> 'neutral')
                                                 OVER (PARTITION BY keyword, day), 0), 2)
       END AS pct_of_emotional
FROM latest
GROUP BY keyword, day, label;

-- Every analysis's breakdowns as the API returned them, with their intervals: what a BI
-- tool plots to compare keywords (overlapping intervals: no clear difference).
CREATE OR REPLACE VIEW v_breakdowns AS
SELECT q.query_id, q.keyword_norm AS keyword, q.created_at, q.source, a.task, a.label,
       a.pct, a.pct_low, a.pct_high, a.pct_among, a.pct_among_low, a.pct_among_high, a.n AS posts,
       a.avg_score, coalesce(q.breakdown_methods ->> a.task, 'cc') AS method, q.n_scored
FROM query_aggregates a
JOIN queries q USING (query_id);
